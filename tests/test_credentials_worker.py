"""Credentials seen from real workers: the directory lock, symlinks, start-up recovery, per-bot users."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from protocol import ContainerState, CredsUpdate, ErrorEvent, Event, Hello, StateChange
from worker.credentials import CredentialsManager

from .harness import REPO

PAIRED = {"paired": True}


def run_standalone(fleet, bot: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker", "--config", str(fleet.config_path), "--bot", bot,
                           "--subscribe-timeout", "0.2"], cwd=REPO, capture_output=True, text=True, timeout=30)


def event_of(kind, bot: str = "b1", **fields):
    return lambda m: isinstance(m, Event) and m.bot == bot and isinstance(m.data, kind) and all(
        getattr(m.data, k) == v for k, v in fields.items())


def test_a_second_worker_for_a_running_bot_refuses_with_exit_78(fleet_factory, launch) -> None:
    fleet = fleet_factory([{"id": "b1", "simulated": PAIRED}])
    service, tap = launch(fleet)
    hello = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1", what="b1's hello")
    second = run_standalone(fleet, "b1")
    assert second.returncode == 78, second.stderr
    assert f"in use by pid {hello.pid}" in second.stderr
    assert psutil.pid_exists(hello.pid), "the running worker is untouched"


def test_a_symlinked_bot_dir_is_refused(fleet_factory, tmp_path: Path) -> None:
    fleet = fleet_factory(["b1"])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    fleet.bot_dir("b1").parent.mkdir(parents=True)
    fleet.bot_dir("b1").symlink_to(outside)
    result = run_standalone(fleet, "b1")
    assert result.returncode == 78 and "is a symlink" in result.stderr, result.stderr
    assert list(outside.iterdir()) == [], "nothing written through the link"


def test_a_worker_refuses_a_bot_id_that_could_escape_the_auth_root(fleet_factory) -> None:
    fleet = fleet_factory(["b1"])
    result = run_standalone(fleet, "../b1")
    assert result.returncode == 78 and "no bot '../b1'" in result.stderr
    assert not (fleet.auth_dir / "b1").exists() and not (fleet.root / "bot_..").exists()


def test_a_worker_tightens_loose_permissions_in_its_directory(fleet_factory, launch) -> None:
    fleet = fleet_factory([{"id": "b1", "simulated": PAIRED}])
    fleet.bot_dir("b1").mkdir(parents=True, mode=0o755)
    copied = fleet.bot_dir("b1") / "copied-by-hand.json"
    copied.write_text("{}")
    copied.chmod(0o644)
    service, tap = launch(fleet, env={})
    tap.wait_for(event_of(CredsUpdate, reason="connected"), what="b1 connected")
    assert fleet.bot_dir("b1").stat().st_mode & 0o777 == 0o700
    assert copied.stat().st_mode & 0o777 == 0o600
    assert (fleet.bot_dir("b1") / "creds.json").stat().st_mode & 0o777 == 0o600


def test_a_corrupt_session_is_restored_at_start_and_the_bot_connects(fleet_factory, launch) -> None:
    fleet = fleet_factory([{"id": "b1", "simulated": PAIRED}])
    manager = CredentialsManager(fleet.auth_dir, fleet.server)
    bot = SimpleNamespace(id="b1", backend="simulated", phone_number=None)
    manager.save_credentials(bot, {"simulated": True, "me": "1@s.whatsapp.net"})
    manager.backup_credentials(bot)
    store = manager.store_path(bot)
    store.write_text('{"simulated": tr')
    service, tap = launch(fleet)
    error = tap.wait_for(event_of(ErrorEvent, code="corrupt-store"), what="the corrupt-store error")
    assert error.data.file == str(store) and not error.data.fatal
    tap.wait_for(event_of(CredsUpdate, reason="restored"), what="creds-update restored")
    tap.wait_for(event_of(CredsUpdate, reason="connected"), what="the restored bot connecting")
    assert len(list(store.parent.glob("creds.json.corrupt.*"))) == 1


def test_a_corrupt_session_without_backup_exits_fatal_once(fleet_factory, launch) -> None:
    fleet = fleet_factory([{"id": "b1", "simulated": PAIRED}])
    fleet.bot_dir("b1").mkdir(parents=True)
    (fleet.bot_dir("b1") / "creds.json").write_bytes(b"\x00garbage")
    service, tap = launch(fleet)
    error = tap.wait_for(event_of(ErrorEvent, code="corrupt-store"), what="the fatal corrupt-store error")
    assert error.data.fatal and error.data.file.endswith("creds.json")
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is ContainerState.FAILED,
                 what="b1 failed (not restarted)")
    assert service.control("status", {"bots": ["b1"]})["bots"][0]["restarts"] == 0
    assert (fleet.bot_dir("b1") / "creds.json").read_bytes() == b"\x00garbage", "never deleted"


USER = "botvisor-t1"


@pytest.fixture
def bot_user():
    if os.geteuid() != 0:
        pytest.skip("per-bot users need the tests to run as root")
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        if subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                          capture_output=True).returncode != 0:
            pytest.skip("useradd failed")
        created = True
    yield pwd.getpwnam(USER)
    if created:
        removed = subprocess.run(["userdel", USER], capture_output=True, text=True)
        assert removed.returncode == 0, f"userdel {USER}: {removed.stderr}"


def test_a_bot_with_its_own_user_runs_as_it_and_owns_its_directory(bot_user, fleet_factory, launch) -> None:
    # bot_user first: its teardown (userdel) runs after launch has killed the worker using it
    auth = Path(tempfile.mkdtemp(prefix="bv-auth-", dir="/tmp"))
    try:
        os.chmod(auth, 0o711)  # traversable: the worker walks through it to its own directory
        fleet = fleet_factory([{"id": "b1", "user": USER, "simulated": PAIRED}, {"id": "b2", "simulated": PAIRED}],
                              auth_dir=str(auth))
        service, tap = launch(fleet)
        tap.wait_for(event_of(CredsUpdate, reason="connected"), what="b1 connected under its own user")
        tap.wait_for(event_of(CredsUpdate, bot="b2", reason="connected"), what="b2 connected")
        hello = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1", what="b1's hello")
        assert psutil.Process(hello.pid).uids().effective == bot_user.pw_uid
        b1 = auth / fleet.server / "bot_b1"
        for path in [b1, *b1.iterdir()]:
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (bot_user.pw_uid, bot_user.pw_gid), path
            assert st.st_mode & 0o077 == 0, f"{path} is readable by others"
        b2 = auth / fleet.server / "bot_b2"
        assert b2.stat().st_uid == 0 and b2.stat().st_mode & 0o777 == 0o700
        probe = subprocess.run(["setpriv", f"--reuid={bot_user.pw_uid}", f"--regid={bot_user.pw_gid}",
                                "--clear-groups", "ls", str(b2)], capture_output=True, text=True)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, "b1's user cannot read b2's session"
    finally:
        shutil.rmtree(auth, ignore_errors=True)
