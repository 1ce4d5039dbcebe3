"""sd_notify against a real unix datagram socket: READY, STATUS, RELOADING, STOPPING, WATCHDOG."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

from protocol import Bye, ContainerState, Hello, StateChange
from supervisor.systemd import WEDGE_ENV, Notifier

from .harness import alive, wait_until


class NotifySocket:
    """What systemd listens on: a unix datagram socket, every datagram kept with its arrival time."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bv-n-", dir="/tmp"))
        self.path = str(self.dir / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.received: list[tuple[float, dict[str, str]]] = []

    def read(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.received.append((time.monotonic(), fields))
        return fields

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float, what: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            fields = self.read(left)
            if fields is not None and predicate(fields):
                return fields
        raise AssertionError(f"no {what} within {timeout} s; got {[f for _, f in self.received][-10:]}")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.read(left)

    def kinds(self) -> list[str]:
        """The lifecycle notifications in arrival order (STATUS-only and WATCHDOG left out)."""
        wanted = ("READY", "RELOADING", "STOPPING")
        return [k for _, fields in self.received for k in wanted if fields.get(k) == "1"]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ready_comes_once_every_bot_was_started_then_status_follows_the_fleet(fleet_factory, launch, notify):
    bots = [{"id": f"b{i}", "autostart": True} for i in range(3)]
    fleet = fleet_factory(bots, start_interval=0.3)
    service, tap = launch(fleet, env={"NOTIFY_SOCKET": notify.path})
    ready = notify.wait_for(lambda f: f.get("READY") == "1", timeout=20, what="READY=1")
    assert notify.received[0][1] is ready, "READY=1 must be the first notification"
    # sent before the staggered starts were done, it would count bots still stopped
    assert "stopped" not in ready["STATUS"], ready
    assert sum(int(part.split()[0]) for part in ready["STATUS"].split(", ")) == 3, ready
    # the last bot's hello usually comes after READY=1 (sent once its start was attempted), and a
    # STATUS follows it; on a loaded machine it can come first, and READY=1 says so itself
    if ready["STATUS"] != "3 running, 0 backoff, 0 failed":
        notify.wait_for(lambda f: f.get("STATUS") == "3 running, 0 backoff, 0 failed", timeout=20,
                        what="STATUS with all three bots running")
    hello = tap.wait_for(lambda m: isinstance(m, Hello), what="a hello")
    # NotifyAccess=main aside: a worker must not even see the socket
    assert "NOTIFY_SOCKET" not in psutil.Process(hello.pid).environ()


def test_start_reload_and_stop_notify_in_order(fleet_factory, launch, notify):
    fleet = fleet_factory([{"id": "b1", "autostart": True}])
    service, tap = launch(fleet, env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for(lambda f: f.get("READY") == "1", timeout=20, what="READY=1")
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1", what="b1's hello")

    fleet.bots.append({"id": "b2", "autostart": True})
    fleet.write()
    service.signal(signal.SIGHUP)
    reloading = notify.wait_for(lambda f: f.get("RELOADING") == "1", timeout=10, what="RELOADING=1")
    # systemd >= 253 needs the CLOCK_MONOTONIC time of the request along with RELOADING=1
    now_usec = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    assert 0 <= now_usec - int(reloading["MONOTONIC_USEC"]) < 10e6
    reloaded = notify.wait_for(lambda f: f.get("READY") == "1", timeout=10, what="READY=1 after the reload")
    assert reloaded["STATUS"].startswith("1 running") and "1 initializing" in reloaded["STATUS"], reloaded
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b2", what="b2's hello")

    service.signal(signal.SIGTERM)
    notify.wait_for(lambda f: f.get("STOPPING") == "1", timeout=10, what="STOPPING=1")
    assert service.wait(timeout=15) == 0
    notify.drain(0.2)
    assert notify.kinds() == ["READY", "RELOADING", "READY", "STOPPING"]
    last_status = [f["STATUS"] for _, f in notify.received if "STATUS" in f][-1]
    assert last_status == "0 running, 0 backoff, 0 failed, 2 stopped"


def test_watchdog_pings_stop_while_the_loop_is_wedged_and_resume_after(fleet_factory, launch, notify):
    """The wedge is real: SIGUSR1 with $BOTVISOR_DEBUG_WEDGE_SECONDS makes the loop itself sleep.

    The process stays alive and its other threads keep working (the metrics endpoint answers
    during the wedge), so the pings can only have stopped because they come from the loop.
    """
    port = free_port()
    fleet = fleet_factory([{"id": "b1", "autostart": True}])
    fleet.extra = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    fleet.write()
    env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000", WEDGE_ENV: "2.0"}
    service, tap = launch(fleet, env=env)
    notify.wait_for(lambda f: f.get("READY") == "1", timeout=20, what="READY=1")
    notify.received.clear()
    notify.drain(1.0)
    pings = [t for t, f in notify.received if f.get("WATCHDOG") == "1"]
    assert len(pings) >= 7, f"expected a ping every 0.1 s (half of WATCHDOG_USEC), got {len(pings)} in 1 s"

    notify.received.clear()
    wedged_at = time.monotonic()
    service.signal(signal.SIGUSR1)
    notify.drain(1.2)
    assert psutil.Process(service.pid).status() != psutil.STATUS_STOPPED
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    lag = next(float(line.split()[1]) for line in body.splitlines()
               if line.startswith("botvisor_supervisor_loop_lag_seconds "))
    assert lag >= 0.6, f"a wedged loop must show in the loop lag, got {lag}"
    notify.wait_for(lambda f: f.get("WATCHDOG") == "1" and time.monotonic() > wedged_at + 2.0, timeout=5,
                    what="a ping after the wedge")
    notify.drain(0.5)
    pings = [t for t, f in notify.received if f.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip([wedged_at] + pings, pings)]
    assert max(gaps) >= 1.8, f"pings must stop while the loop is wedged; gaps {gaps}"
    after = [t for t in pings if t > wedged_at + 2.1]
    assert len(after) >= 3 and max(b - a for a, b in zip(after, after[1:])) < 0.35, "pings must resume"
    assert service.proc.poll() is None


def test_from_env_unsets_the_variables_and_honours_watchdog_pid(monkeypatch, notify):
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    try:
        assert notifier.watchdog_interval == 2.0
        assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(os.environ)
        notifier.status("1 running, 0 backoff, 0 failed")
        notifier.status("1 running, 0 backoff, 0 failed")  # unchanged: not sent again
        notifier.stopping()
        assert notify.read(2) == {"STATUS": "1 running, 0 backoff, 0 failed"}
        assert notify.read(2) == {"STOPPING": "1"}
    finally:
        notifier.close()
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    other = Notifier.from_env()
    assert other.watchdog_interval is None and other.watchdog_due(time.monotonic()) is None
    other.close()


def test_abstract_notify_socket(monkeypatch):
    name = f"botvisor-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(2)
    try:
        notifier = Notifier("@" + name)
        notifier.ready("0 running, 0 backoff, 0 failed")
        assert listener.recv(4096) == b"READY=1\nSTATUS=0 running, 0 backoff, 0 failed"
        notifier.close()
    finally:
        listener.close()


def test_a_reload_while_the_fleet_is_still_starting_sends_no_early_ready(fleet_factory, launch, notify):
    bots = [{"id": f"b{i}", "autostart": True} for i in range(3)]
    fleet = fleet_factory(bots, start_interval=1.0)  # READY=1 comes after the third start, 2 s in
    service, tap = launch(fleet, env={"NOTIFY_SOCKET": notify.path})
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b0", what="b0's hello")
    service.signal(signal.SIGHUP)
    ready = notify.wait_for(lambda f: f.get("READY") == "1", timeout=20, what="READY=1")
    assert "stopped" not in ready["STATUS"], f"READY=1 came before every bot was started: {ready}"
    tap.wait_for(lambda m: getattr(m, "message", "").startswith("reloaded"), what="the reload's notice")
    assert notify.kinds() == ["READY"], "no RELOADING=1 before the first READY=1"


def test_sigterm_to_the_main_process_alone_stops_every_worker_gracefully(fleet_factory, launch):
    """What KillMode=mixed relies on: SIGTERM to the supervisor only, and nothing left for the SIGKILL.

    (KillMode=control-group was measured to SIGTERM the forkserver too: its death SIGKILLs every
    worker through PR_SET_PDEATHSIG, so no stop was graceful; deploy/README.md.)
    """
    fleet = fleet_factory(["b1", "b2", "b3"])
    service, tap = launch(fleet)
    for bot in ("b1", "b2", "b3"):
        tap.wait_for(lambda m, bot=bot: isinstance(m, Hello) and m.bot == bot, what=f"{bot}'s hello")
    started = [p.pid for p in service.descendants()]
    service.signal(signal.SIGTERM)
    for bot in ("b1", "b2", "b3"):
        tap.wait_for(lambda m, bot=bot: isinstance(m, Bye) and m.bot == bot, timeout=10, what=f"{bot}'s bye")
        stopped = tap.wait_for(lambda m, bot=bot: isinstance(m, StateChange) and m.bot == bot
                               and m.state is ContainerState.STOPPED, timeout=10, what=f"{bot} stopped")
        assert stopped.last_exit.startswith("exit 0"), f"{bot}: {stopped.last_exit}"
    assert service.wait(timeout=15) == 0
    # the final SIGKILL of KillMode=mixed must find nothing left to kill
    wait_until(lambda: not any(alive(p) for p in started), timeout=5, what="every descendant to exit")
