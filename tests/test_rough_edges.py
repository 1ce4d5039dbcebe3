"""The rough edges a new user hit (issue 14, defect 6), each as the user met it: the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from protocol import ContainerState as S
from protocol import StateChange

from .harness import REPO
from .test_creds_cli import creds
from .test_no_orphans import hellos


def cli(fleet, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args, "-c", str(fleet.config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_a_typo_in_the_fleet_part_does_not_lock_the_operator_out_of_a_running_fleet(fleet_factory, launch):
    fleet = fleet_factory(["b1", "b2"])
    service, tap = launch(fleet)
    hellos(tap, 2)
    fleet.extra = '[[bots]]\nid = "b3"\nbakend = "simulated"\n'  # the fix being typed in
    fleet.write()
    status = cli(fleet, "status")
    assert status.returncode == 0, status.stderr
    assert "warning" in status.stderr and "bakend" in status.stderr
    stopped = cli(fleet, "stop", "--all")
    assert stopped.returncode == 0, stopped.stderr
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b2" and m.state is S.STOPPED, what="b2 stopped")
    # where even the endpoints cannot be read, it is still exit 78
    fleet.config_path.write_text("[supervisor\n")
    assert cli(fleet, "status").returncode == 78


def test_no_wait_when_nobody_holds_the_supervisor_lock(fleet_factory):
    fleet = fleet_factory(["b1"])
    fleet.run_dir.mkdir(mode=0o700)
    leftover = socket.socket(socket.AF_UNIX)  # a socket file left by a supervisor that stopped
    leftover.bind(str(fleet.run_dir / "control.sock"))
    leftover.close()
    (fleet.run_dir / "supervisor.lock").write_text("12345")
    started = time.monotonic()
    status = cli(fleet, "status", "--timeout", "5")
    took = time.monotonic() - started
    assert status.returncode == 3, status
    assert "nobody holds" in status.stderr and took < 4.0, (took, status.stderr)


def test_tap_with_a_timeout_and_no_supervisor_says_so(fleet_factory):
    fleet = fleet_factory(["b1"])
    tap = cli(fleet, "tap", "--timeout", "0.5")
    assert tap.returncode == 1
    assert "no supervisor is running" in tap.stderr, tap.stderr


def test_creds_restore_of_a_bad_stamp_refuses_before_stopping_the_bot(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    hellos(tap, 1)
    assert creds(fleet, "backup", "b1").returncode == 0
    bad = creds(fleet, "restore", "b1", "20000101T000000.000000Z", "--stop")
    assert bad.returncode == 1 and "no backup" in bad.stderr, bad.stderr
    assert service.control("status", {"bots": ["b1"]})["bots"][0]["container_state"] == "running"


def test_creds_list_of_an_unknown_bot_fails(fleet_factory):
    fleet = fleet_factory(["b1"])
    unknown = creds(fleet, "list", "ghost")
    assert unknown.returncode == 1 and "no bot 'ghost'" in unknown.stderr, unknown
    assert creds(fleet, "list", "b1").returncode == 0  # configured, no backups yet: fine


def test_status_into_a_closed_pipe_prints_no_traceback(fleet_factory, launch):
    fleet = fleet_factory([f"b{i}" for i in range(3)])
    service, tap = launch(fleet)
    hellos(tap, 3)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "supervisor.cli", "status", "--json", "-c",
                               str(fleet.config_path)], cwd=REPO, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
