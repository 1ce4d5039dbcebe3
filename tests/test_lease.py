"""Leases and handover snapshots against a real PostgreSQL (tests/pgserver.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from supervisor.cluster import handover
from supervisor.cluster.lease import LeaseLost, LeaseStore

from .cluster_fixtures import database, postgres  # noqa: F401 (fixtures)

psycopg = pytest.importorskip("psycopg", reason="psycopg is in the test extra: pip install -e '.[test]'")


def store(dsn: str, owner: str, shard: int = 0, ttl: float = 30.0) -> LeaseStore:
    s = LeaseStore(psycopg.connect(dsn, autocommit=True), "srv", owner, shard, ttl)
    s.ensure_schema()
    return s


def test_one_holder_at_a_time_and_tokens_grow(database: str) -> None:
    a, b = store(database, "0/a"), store(database, "1/b", shard=1)
    assert a.acquire(["x", "y"]) == {"x": 1, "y": 1}
    assert b.acquire(["x", "y"]) == {}  # held and not expired: nobody else gets it
    assert a.renew(["x", "y"]) == {"x", "y"}
    assert b.renew(["x"]) == set()  # renewing what one does not hold does nothing
    a.release("x", 1, None)
    assert b.acquire(["x", "y"]) == {"x": 2}  # released: the next holder, with the next token
    holders = {h.bot: h for h in a.holders()}
    assert holders["x"].owner == "1/b" and holders["x"].token == 2 and holders["x"].shard == 1
    assert holders["y"].owner == "0/a"


def test_an_expired_lease_is_neither_renewed_nor_released_by_its_old_holder(database: str) -> None:
    a, b = store(database, "0/a", ttl=0.3), store(database, "1/b", ttl=30)
    assert a.acquire(["x"]) == {"x": 1}
    time.sleep(0.4)
    assert a.renew(["x"]) == set()  # too late: our lease has ended, even though nobody took it yet
    assert b.acquire(["x"]) == {"x": 2}
    with pytest.raises(LeaseLost):  # the fencing token: the old holder cannot store a snapshot
        a.release("x", 1, ("0" * 64, b"stale"))
    assert a.snapshot("x") is None
    assert b.holders()[0].owner == "1/b"


def test_a_release_under_a_stale_token_changes_nothing(database: str) -> None:
    a = store(database, "0/a")
    a.acquire(["x"])
    a.acquire(["x"])  # taken again by the same owner: token 2
    with pytest.raises(LeaseLost):
        a.release("x", 1, ("0" * 64, b"old"))
    a.release("x", 2, ("d" * 64, b"new"))
    snap = a.snapshot("x")
    assert snap is not None and snap.token == 2 and snap.data == b"new"


def make_bot_dir(path: Path) -> dict[str, object]:
    path.mkdir(parents=True, mode=0o700)
    (path / "creds.json").write_text(json.dumps({"simulated": True, "me": "1555@s.whatsapp.net", "paired_at": 1.5}))
    (path / "creds.metadata.json").write_text(json.dumps({"botId": "x", "lastUpdated": 1, "verified": True}))
    db = sqlite3.connect(path / "outbox.sqlite3")
    db.execute("CREATE TABLE t (v)")
    db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    db.commit()
    db.close()
    (path / "app").mkdir()
    (path / "app" / "state.bin").write_bytes(bytes(range(256)) * 10)
    (path / ".lock").write_text("")
    return handover.describe(path)


def test_a_directory_moves_whole_and_checked(tmp_path: Path, database: str) -> None:
    old = tmp_path / "a" / "srv" / "bot_x"
    before = make_bot_dir(old)
    packed = handover.pack(old, "x")
    assert packed is not None and packed.files >= 5
    a, b = store(database, "0/a"), store(database, "1/b")
    a.acquire(["x"])
    a.release("x", 1, (packed.sha256, packed.data))
    assert b.acquire(["x"]) == {"x": 2}
    snap = b.snapshot("x")
    assert snap is not None and snap.token == 1
    new = tmp_path / "b" / "srv" / "bot_x"
    assert handover.choose(handover.local_token(new), snap.token, 2).restore
    handover.restore(new, snap.sha256, snap.data, 2)
    after = handover.describe(new)
    backups = [k for k in after if k.startswith("creds.backup.")]
    assert backups, "the handover takes the existing backup first"
    assert {k: v for k, v in after.items() if k not in backups} == before  # every file, byte for byte
    assert not (new / ".lock").exists()
    assert handover.local_token(new) == 2
    assert (new.stat().st_mode & 0o777) == 0o700


def test_a_corrupt_snapshot_is_refused_and_the_local_directory_kept(tmp_path: Path) -> None:
    src = tmp_path / "src" / "bot_x"
    make_bot_dir(src)
    packed = handover.pack(src, "x")
    assert packed is not None
    target = tmp_path / "dst" / "bot_x"
    target.mkdir(parents=True)
    (target / "creds.json").write_text('{"mine": true}')
    with pytest.raises(handover.HandoverError, match="digest"):
        middle = len(packed.data) // 2
        flipped = packed.data[:middle] + bytes([packed.data[middle] ^ 0xFF]) + packed.data[middle + 1:]
        handover.restore(target, packed.sha256, flipped, 2)
    # a snapshot whose SQLite store is broken fails its integrity check
    (src / "outbox.sqlite3").write_bytes(b"SQLite format 3\0" + b"\xff" * 2000)
    bad = handover.pack(src, "x")
    assert bad is not None
    with pytest.raises(handover.HandoverError, match="outbox.sqlite3"):
        handover.restore(target, bad.sha256, bad.data, 2)
    assert json.loads((target / "creds.json").read_text()) == {"mine": True}
    assert not list(target.parent.glob(".bot_x.restoring*"))


@pytest.mark.parametrize(("local", "snapshot", "token", "restore", "stale"), [
    (None, None, 1, False, False),   # a new bot
    (None, 3, 4, True, False),       # moved to us: the handover's snapshot
    (3, 3, 4, False, False),         # we handed it over and got it back: the same state
    (2, 5, 6, True, False),          # we ran it long ago; it moved on since
    (5, None, 8, False, True),       # our own dir, but leases 6 and 7 ran elsewhere without handing over
    (None, 5, 8, True, True),        # the last handover was lease 5; 6 and 7 died with their state
    (None, None, 3, False, True),    # it ran twice elsewhere and nothing was ever handed over
])
def test_the_newest_copy_wins_by_fencing_token(local, snapshot, token, restore, stale) -> None:
    choice = handover.choose(local, snapshot, token)
    assert (choice.restore, choice.stale) == (restore, stale), choice.reason


def test_a_waiting_keeper_takes_a_released_lease_at_once_woken_by_notify(tmp_path: Path, database: str,
                                                                         monkeypatch) -> None:
    from protocol.cluster_config import ClusterSettings
    from supervisor.cluster import keeper as keeper_module
    from supervisor.cluster.keeper import Acquired, LeaseKeeper

    monkeypatch.setattr(keeper_module, "ACQUIRE_POLL", 30.0)  # only the notification can be quick
    holder = store(database, "0/a")
    holder.acquire(["x"])
    settings = ClusterSettings(shards=2, lease_ttl=60, renew_interval=20, stop_margin=5)
    waiting = LeaseKeeper(settings, database, "srv", "1/b", 1, bot_dir=lambda bot: tmp_path / f"bot_{bot}")
    waiting.start()
    try:
        waiting.want({"x"})
        time.sleep(1.0)  # its first try found the lease held; the next poll is 30 s away
        assert waiting.results.empty() or not any(isinstance(r, Acquired) for r in list(waiting.results.queue))
        released = time.monotonic()
        holder.release("x", 1, None)
        while True:
            result = waiting.results.get(timeout=10)
            if isinstance(result, Acquired):
                break
        assert result.bot == "x" and result.token == 2
        assert time.monotonic() - released < 3.0, "the release did not wake the waiting keeper"
    finally:
        assert waiting.close(5.0)
