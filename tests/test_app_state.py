"""App state: key/value stores and dialogs in SQLite (botvisor/state.py), durable and private,
backed up and restored with the bot's session (worker/credentials.py, worker/recovery.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from botvisor import Bot, StateError, filters
from botvisor.state import STATE_FILE, Dialog, State, StateDB
from botvisor.testing import AppTester
from worker.credentials import APP_STATE, CredentialsManager
from worker.recovery import check_at_start, restore_backup

from .harness import REPO


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stores_are_scoped_and_hold_plain_data(tmp_path: Path):
    db = StateDB(tmp_path / STATE_FILE, Clock())
    alice_dm = State(db, "alice@s.whatsapp.net", "alice@s.whatsapp.net")
    alice_grp = State(db, "g1@g.us", "alice@s.whatsapp.net")
    bob_grp = State(db, "g1@g.us", "bob@s.whatsapp.net")
    alice_dm.bot["visits"] = 1
    alice_dm.user["cart"] = ["margherita"]
    alice_grp.user["cart"] = ["funghi"]
    assert bob_grp.bot["visits"] == 1, "the bot store is shared"
    assert "cart" not in bob_grp.user
    assert alice_dm.user["cart"] == ["margherita"] and alice_grp.user["cart"] == ["funghi"]
    copy = alice_dm.user["cart"]
    copy.append("x")
    assert alice_dm.user["cart"] == ["margherita"], "a value read back is a copy"
    assert dict(alice_dm.bot) == {"visits": 1} and len(alice_dm.bot) == 1
    del alice_dm.bot["visits"]
    assert alice_dm.bot.get("visits", 0) == 0
    with pytest.raises(KeyError):
        del alice_dm.bot["visits"]
    with pytest.raises(StateError, match="plain JSON"):
        alice_dm.bot["bad"] = object()
    with pytest.raises(StateError, match="plain JSON"):
        alice_dm.bot["nan"] = float("nan")
    db.close()
    reopened = State(StateDB(tmp_path / STATE_FILE, Clock()), "alice@s.whatsapp.net", "alice@s.whatsapp.net")
    assert reopened.user["cart"] == ["margherita"], "committed state is on disk"


def test_the_database_is_private(tmp_path: Path):
    old = os.umask(0o022)
    try:
        db = StateDB(tmp_path / STATE_FILE, Clock())
        State(db, "a", "a").bot["k"] = "v"
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, f"{path.name} is {oct(path.stat().st_mode & 0o777)}"


def test_dialog_steps_data_and_timeout(tmp_path: Path):
    clock = Clock()
    db = StateDB(tmp_path / STATE_FILE, clock)
    dialog = Dialog(db, "c", "s")
    assert dialog.state is None and dialog.data == {}
    dialog.goto("pizza", timeout=60, started_by="/order")
    dialog.goto("address", pizza="margherita")
    fresh = Dialog(db, "c", "s")
    assert fresh.state == "address" and fresh.data == {"started_by": "/order", "pizza": "margherita"}
    assert Dialog(db, "c", "other").state is None, "each sender has their own"
    fresh.update(size="large")
    assert Dialog(db, "c", "s").data["size"] == "large"
    assert fresh.end() == {"started_by": "/order", "pizza": "margherita", "size": "large"}
    assert Dialog(db, "c", "s").state is None
    Dialog(db, "c", "s").goto("pizza", timeout=60)
    clock.now += 59
    assert Dialog(db, "c", "s").state == "pizza"
    clock.now += 2
    assert Dialog(db, "c", "s").state is None, "past its timeout the dialog is over"
    with pytest.raises(StateError):
        Dialog(db, None, None).goto("x")


def test_a_value_written_survives_a_sigkill_right_after(tmp_path: Path):
    """Each write is a committed transaction: killing the process the moment set() returned loses nothing."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from botvisor.state import StateDB, State, Dialog
        db = StateDB(__import__('pathlib').Path({str(tmp_path / STATE_FILE)!r}), time.time)
        State(db, "c", "s").user["answer"] = 42
        Dialog(db, "c", "s").goto("address", pizza="funghi")
        print("written", flush=True)
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    db = StateDB(tmp_path / STATE_FILE, Clock())
    assert State(db, "c", "s").user["answer"] == 42
    assert Dialog(db, "c", "s").state == "address" and Dialog(db, "c", "s").data == {"pizza": "funghi"}


def test_state_survives_an_app_restart_in_the_test_kit(tmp_path: Path):
    bot = Bot()

    @bot.on_message(filters.equals("count"))
    def count(ctx):
        ctx.state.user["n"] = ctx.state.user.get("n", 0) + 1
        ctx.reply(str(ctx.state.user["n"]))

    with AppTester(bot, directory=tmp_path) as t:
        t.say("count")
        t.restart(crash=True)
        t.say("count")
        assert t.replies() == ["1", "2"]
    assert (tmp_path / STATE_FILE).exists()


def _bot_dir(tmp_path: Path) -> tuple[CredentialsManager, Path]:
    bot_dir = tmp_path / "auth" / "srv" / "bot_b1"
    bot_dir.mkdir(parents=True, mode=0o700)
    (bot_dir / "creds.json").write_text('{"simulated": true}')
    return CredentialsManager.for_bot_dir(bot_dir), bot_dir


def test_backups_include_the_app_state_and_restore_puts_it_back(tmp_path: Path):
    assert APP_STATE == STATE_FILE
    manager, bot_dir = _bot_dir(tmp_path)
    db = StateDB(bot_dir / STATE_FILE, Clock())
    State(db, "c", "s").bot["orders"] = 3
    made = manager.backup_credentials("b1")
    assert made.app_state is not None and made.app_state.exists()
    assert made.app_state.stat().st_mode & 0o777 == 0o600
    assert manager.list_backups("b1")[0].app_state == made.app_state
    State(db, "c", "s").bot["orders"] = 99
    db.close()
    restore_backup(manager, "b1", made.stamp)
    assert State(StateDB(bot_dir / STATE_FILE, Clock()), "c", "s").bot["orders"] == 3


def test_a_corrupt_app_state_is_restored_from_the_newest_backup_at_start(tmp_path: Path):
    manager, bot_dir = _bot_dir(tmp_path)
    db = StateDB(bot_dir / STATE_FILE, Clock())
    State(db, "c", "s").bot["orders"] = 7
    manager.backup_credentials("b1")
    db.close()
    for side in bot_dir.glob(STATE_FILE + "-*"):
        side.unlink()
    (bot_dir / STATE_FILE).write_bytes(b"this is not a database" * 100)
    events = []
    check_at_start(manager, "b1", events.append)
    assert any(getattr(e, "code", None) == "corrupt-store" and STATE_FILE in e.message for e in events)
    assert State(StateDB(bot_dir / STATE_FILE, Clock()), "c", "s").bot["orders"] == 7
    assert any(p.name.startswith(STATE_FILE + ".corrupt.") for p in bot_dir.iterdir()), "the bad file is kept"
