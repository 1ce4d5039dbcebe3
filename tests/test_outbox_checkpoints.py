"""The outbox's write-ahead log is checkpointed on a thread, not inside a send's commit on the
worker's loop (worker/checkpointer.py), and the log still starts over when sends pause."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from worker import checkpointer
from worker.outbox_store import OutboxStore


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _sends(store: OutboxStore, n: int, start: int) -> None:
    for i in range(start, start + n):
        entry = store.add(f"id{i:06d}", "send", {"to": "1@s.whatsapp.net", "text": "x" * 200}, f"M{i}", sending=True)
        store.finish(entry, "sent", result={"id": f"M{i}"})


def _rounds(store: OutboxStore, rounds: int, per_round: int) -> int:
    """Sends in bursts, each followed by a pause in which the thread checkpoints; the largest log seen."""
    wal = Path(f"{store.path}-wal")
    largest = 0
    for r in range(rounds):
        before = store.checkpointer.checkpoints
        _sends(store, per_round, r * per_round)
        largest = max(largest, wal.stat().st_size)
        if store.checkpointer.every <= 2 * per_round:
            _wait_for(lambda before=before: store.checkpointer.checkpoints > before)
    return largest


def test_the_thread_checkpoints_and_the_log_starts_over_when_sends_pause(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpointer, "DEFAULT_EVERY", 20)
    store = OutboxStore(tmp_path / "outbox.sqlite3", sync="normal")
    try:
        # the loop's connection no longer checkpoints at SQLite's 1000 pages
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone() == (checkpointer.FALLBACK_PAGES,)
        largest = _rounds(store, rounds=15, per_round=10)  # 20 commits a round: one checkpoint each
        assert store.checkpointer.checkpoints >= 15
        assert store.checkpointer._thread is not None and store.checkpointer._thread.name == "outbox-checkpoint"
    finally:
        store.close()
    # without the thread the same sends leave a log five times as long: it never started over
    monkeypatch.setattr(checkpointer, "DEFAULT_EVERY", 10**9)
    other = OutboxStore(tmp_path / "other.sqlite3", sync="normal")
    try:
        unchecked = _rounds(other, rounds=15, per_round=10)
        assert other.checkpointer.checkpoints == 0
    finally:
        other.close()
    assert largest * 5 < unchecked, (largest, unchecked)


def test_close_stops_the_thread_and_removes_the_log(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpointer, "DEFAULT_EVERY", 5)
    store = OutboxStore(tmp_path / "outbox.sqlite3", sync="full")
    _sends(store, 10, 0)
    thread = store.checkpointer._thread
    assert thread is not None
    store.close()
    assert not thread.is_alive()
    assert not os.path.exists(tmp_path / "outbox.sqlite3-wal")  # the last connection's close checkpointed
    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    assert db.execute("SELECT count(*) FROM sends WHERE state = 'sent'").fetchone() == (10,)
    db.close()


def test_an_outbox_made_with_the_state_index_loses_it(tmp_path):
    """The index on state cost every commit index pages and served two queries of a small table."""
    path = tmp_path / "outbox.sqlite3"
    store = OutboxStore(path)
    store.db.execute("CREATE INDEX sends_pending ON sends (state, seq)")  # as the first outboxes had it
    entry = store.add("a1", "send", {"to": "1@s.whatsapp.net", "text": "kept"}, "M1")
    store.close()
    store = OutboxStore(path)
    try:
        names = [r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
        assert "sends_pending" not in names
        assert [e.id for e in store.pending()] == [entry.id]  # the rows are untouched
    finally:
        store.close()
