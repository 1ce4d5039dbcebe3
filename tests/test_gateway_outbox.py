"""The outbox's batches run on the event loop (gateway/webhooks/outbox.py): what may wait on
the disk or on another process's lock must not stop the loop, and the log must stay short."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from gateway.webhooks import outbox as outbox_module
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.store import Store


def envelope(bot: str, i: int, size: int = 0) -> dict:
    return {"id": f"evt_{bot}_{i}", "server": "t", "bot": bot, "type": "message-upsert",
            "timestamp": time.time(), "seq": i, "pid": 1, "data": {"n": i, "pad": "x" * size}}


class Ticker:
    """Counts the loop's turns: a loop that stops turning stops counting."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1


def stored(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT event_id FROM deliveries ORDER BY id")]


def test_a_batch_that_meets_another_processs_lock_waits_off_the_loop_and_loses_nothing(tmp_path):
    path = tmp_path / "o.sqlite3"
    locked, release = threading.Event(), threading.Event()

    def cli_transaction() -> None:  # what `botvisor webhooks retry` does: a write transaction
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(10)
        db.execute("COMMIT")
        db.close()

    async def scenario() -> tuple[int, list[str]]:
        outbox = Outbox(path, 100_000, "normal")
        holder = threading.Thread(target=cli_transaction)
        holder.start()
        try:
            assert await asyncio.to_thread(locked.wait, 5)
            ticker = Ticker()
            for i in range(50):
                await outbox.write(envelope("b1", i), ["r"], None)
            await asyncio.sleep(0.5)  # the lock is held all this time
            ticks_while_locked = ticker.ticks
            during = stored(path)
            release.set()
            await outbox.drain(5)
            ticker.task.cancel()
            assert during == [], "nothing committed while another held the lock"
            return ticks_while_locked, stored(path)
        finally:
            release.set()
            holder.join(10)
            outbox.close()

    ticks, rows = asyncio.run(scenario())
    assert ticks >= 20, f"the loop turned {ticks} times in 0.5 s while a batch waited for the lock"
    assert rows == [f"evt_b1_{i}" for i in range(50)], "every write committed, in order, once the lock went"


def test_checkpoints_keep_the_log_short(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox_module, "CHECKPOINT_S", 0.0)  # before every batch
    path = tmp_path / "o.sqlite3"

    async def scenario() -> int:
        outbox = Outbox(path, 100_000, "normal")
        try:
            for batch in range(40):  # 40 batches of 50 events of ~5 KB: ~10 MB through the log
                for i in range(50):
                    await outbox.write(envelope("b1", batch * 50 + i, 5000), ["r"], None)
                await outbox.drain(10)
            return path.with_name(path.name + "-wal").stat().st_size  # before the last close checkpoints
        finally:
            outbox.close()

    wal = asyncio.run(scenario())
    assert len(stored(path)) == 2000
    # the log is reused from its start after each checkpoint: about one batch long (without the
    # checkpoints this connection never makes, it held all ~10 MB)
    assert wal < 2_000_000, f"the log grew to {wal} bytes"


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_under_full_a_commit_waiting_on_the_disk_never_stops_the_loop(tmp_path, monkeypatch, sync):
    commit = Store.commit

    def slow_commit(self: Store) -> None:  # a disk whose fsync takes 0.4 s
        time.sleep(0.4)
        commit(self)

    monkeypatch.setattr(Store, "commit", slow_commit)

    async def scenario() -> int:
        outbox = Outbox(tmp_path / "o.sqlite3", 100_000, sync)
        try:
            ticker = Ticker()
            await outbox.write(envelope("b1", 0), ["r"], None)
            await asyncio.sleep(0.3)  # inside the commit
            ticks = ticker.ticks
            await outbox.drain(5)
            ticker.task.cancel()
            return ticks
        finally:
            outbox.close()

    ticks = asyncio.run(scenario())
    if sync == "full":
        assert ticks >= 10, f"the loop turned {ticks} times in 0.3 s of a commit's fsync"
    else:  # no fsync in a commit under "normal": it runs on the loop (this one waits on purpose)
        assert ticks < 10
