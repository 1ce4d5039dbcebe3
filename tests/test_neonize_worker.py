"""The real neonize backend under the real supervisor, offline.

Every bot here has an explicit ``proxy`` on loopback, so the test means the same on a machine
with internet: a refused port makes every dial fail at once with the real Go error; a silent
listener keeps a dial in flight (whatsmeow waits on it) for the SIGTERM and CPU tests.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import psutil
import pytest

from protocol import Bye, ContainerState, Event, EventType, Hello, StateChange

from .harness import REPO, alive, wait_until

pytestmark = pytest.mark.slow


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentProxy:
    """Accepts connections and never answers: a dial through it hangs."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.accepted.set()

    def close(self) -> None:
        """Stop listening, then close every connection, also one accepted meanwhile. A bare
        close() of the listener leaves it listening while the accept thread is blocked in it
        (Linux keeps the socket until accept returns): a dial after it still connected, sat on a
        silent connection holding whatsmeow's socket lock, and an offline call waited 60 s."""
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (EINVAL) and stops listening
        except OSError:
            pass
        self.server.close()
        self._thread.join(5)
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_proxy():
    proxy = SilentProxy()
    yield proxy
    proxy.close()


def neonize_bot(proxy_port: int, **extra) -> dict:
    return {"id": "n1", "backend": "neonize", "proxy": f"http://127.0.0.1:{proxy_port}", **extra}


def closes(tap, bot: str = "n1", pid: int | None = None) -> list[Event]:
    return [m for m in tap.seen if isinstance(m, Event) and m.bot == bot and m.type is EventType.CONNECTION_UPDATE
            and m.data.connection == "close" and (pid is None or m.pid == pid)]


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[Path, int]:
    """Every file under ``root`` with its mtime (ns), to see what a test run wrote."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                found[path] = path.lstat().st_mtime_ns
            except FileNotFoundError:
                pass
    return found


def written(before: dict[Path, int], after: dict[Path, int]) -> set[Path]:
    return {path for path, mtime in after.items() if before.get(path) != mtime}


def test_the_session_store_is_created_in_the_bot_dir_and_nothing_is_written_elsewhere(fleet_factory, launch, tmp_path):
    skip = (".git", "__pycache__", ".pytest_cache", ".hypothesis")
    repo_before = snapshot(REPO, skip)
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    fleet = fleet_factory([neonize_bot(refused_port(), max_reconnect_attempts=2)],
                          backoff={"initial": 0.05, "jitter": 0.0})
    tree_before = snapshot(tmp_path)
    service, tap = launch(fleet, env={"HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache")})
    tap.wait_for(lambda m: isinstance(m, Bye) and m.bot == "n1", timeout=20, what="the first worker's bye")
    bot_dir = fleet.bot_dir("n1")
    store = bot_dir / "session.sqlite3"
    assert store.is_file()
    with sqlite3.connect(store) as db:  # the URI parameters reached SQLite
        assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert "whatsmeow_device" in {r[0] for r in db.execute("select name from sqlite_master")}
    service.signal(signal.SIGTERM)
    assert service.wait(15) == 0
    outside = {p for p in written(tree_before, snapshot(tmp_path)) if bot_dir not in p.parents}
    expected = {fleet.root / "supervisor.log"}
    assert outside <= expected, f"written outside the bot's directory: {sorted(map(str, outside - expected))}"
    assert not list(home.iterdir()) and not list(tmp.iterdir())
    in_repo = written(repo_before, snapshot(REPO, skip))
    assert not in_repo, f"written in the working directory: {sorted(map(str, in_repo))}"


def test_close_events_carry_the_dial_error_and_a_growing_retry_in_then_the_supervisor_restarts(fleet_factory, launch):
    port = refused_port()
    fleet = fleet_factory([neonize_bot(port, max_reconnect_attempts=4)],
                          backoff={"initial": 0.1, "factor": 2.0, "max": 5.0, "jitter": 0.0})
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "n1", timeout=15, what="n1's hello")
    bye = tap.wait_for(lambda m: isinstance(m, Bye) and m.pid == first.pid, timeout=20, what="n1 giving up")
    assert (bye.reason, bye.exit_code) == ("reconnect-exhausted", 70)
    seen = closes(tap, pid=first.pid)
    assert [m.data.attempt for m in seen] == [1, 2, 3, 4]
    for m in seen:
        assert m.data.reason.startswith("dial failed: failed to dial whatsapp web websocket")
        assert f"127.0.0.1:{port}" in m.data.reason and "connection refused" in m.data.reason
    assert [m.data.retry_in for m in seen] == [0.1, 0.2, 0.4, None], "the last attempt has no retry: it gives up"
    connecting = [m.data.attempt for m in tap.seen if isinstance(m, Event) and m.pid == first.pid
                  and m.type is EventType.CONNECTION_UPDATE and m.data.connection == "connecting"]
    assert connecting == [1, 2, 3, 4]
    error = tap.wait_for(lambda m: isinstance(m, Event) and m.pid == first.pid and m.type is EventType.ERROR,
                         what="the error")
    assert error.data.code == "reconnect-exhausted" and not error.data.fatal
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.state is ContainerState.BACKOFF
                 and "exit 70" in (m.reason or ""), what="backoff after exit 70")
    second = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "n1" and m.pid != first.pid, timeout=15,
                          what="the restarted worker's hello")
    tap.wait_for(lambda m: isinstance(m, Event) and m.pid == second.pid and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "close" and m.data.attempt == 1, what="the new worker dialling from 1")


def test_mid_dial_the_worker_uses_little_cpu_and_sigterm_ends_it_with_0_at_once(fleet_factory, launch, silent_proxy):
    fleet = fleet_factory([neonize_bot(silent_proxy.port)])
    service, tap = launch(fleet)
    hello = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "n1", timeout=15, what="n1's hello")
    tap.wait_for(lambda m: isinstance(m, Event) and m.pid == hello.pid and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "connecting", what="n1 dialling")
    assert silent_proxy.accepted.wait(10), "the dial must go through the bot's proxy"
    worker = psutil.Process(hello.pid)
    before, t0 = worker.cpu_times(), time.monotonic()
    while time.monotonic() - t0 < 2.0:  # a measuring window (not a synchronisation): keep reading the tap
        tap.read(0.1)
    after, window = worker.cpu_times(), time.monotonic() - t0
    used = (after.user + after.system) - (before.user + before.system)
    assert used < 0.05 * window, f"the worker used {used:.3f} s of CPU in {window:.1f} s while waiting"
    assert not closes(tap, pid=hello.pid), "the dial is still in flight"
    killed_at = time.monotonic()
    os.kill(hello.pid, signal.SIGTERM)
    worker.wait(5)
    elapsed = time.monotonic() - killed_at
    assert elapsed < 1.0, f"SIGTERM mid-dial took {elapsed:.2f} s (client.stop() would block up to 60 s)"
    bye = tap.wait_for(lambda m: isinstance(m, Bye) and m.pid == hello.pid, what="the bye")
    assert bye.exit_code == 0 and "SIGTERM" in bye.reason
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "n1" and "exit 0" in (m.reason or ""),
                 what="the supervisor seeing exit 0")


def test_the_supervisor_stops_a_dialling_neonize_worker_without_killing_it(fleet_factory, launch, silent_proxy):
    fleet = fleet_factory([neonize_bot(silent_proxy.port)], stop_timeout=5.0)
    service, tap = launch(fleet)
    hello = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "n1", timeout=15, what="n1's hello")
    assert silent_proxy.accepted.wait(10)
    asked = time.monotonic()
    service.control("stop", {"bots": ["n1"]})
    stopped = tap.wait_for(lambda m: isinstance(m, StateChange) and m.state is ContainerState.STOPPED, timeout=10,
                           what="n1 stopped")
    assert time.monotonic() - asked < 2.0, "the worker must not need the SIGKILL after stop_timeout (5 s)"
    assert stopped.last_exit == "exit 0 (ok)", stopped
    bye = tap.wait_for(lambda m: isinstance(m, Bye) and m.pid == hello.pid, what="the bye")
    assert bye.exit_code == 0
    wait_until(lambda: not alive(hello.pid), 2, "the worker gone")


def test_proxy_variables_in_the_environment_are_ignored_the_bot_uses_its_own(fleet_factory, launch, silent_proxy):
    port = refused_port()
    stray = f"http://127.0.0.1:{silent_proxy.port}"
    fleet = fleet_factory([neonize_bot(port, max_reconnect_attempts=1)])
    service, tap = launch(fleet, env={"HTTPS_PROXY": stray, "https_proxy": stray, "HTTP_PROXY": stray,
                                      "ALL_PROXY": stray})
    first = tap.wait_for(lambda m: isinstance(m, Event) and m.bot == "n1" and m.type is EventType.CONNECTION_UPDATE
                         and m.data.connection == "close", timeout=20, what="the first close")
    assert f"127.0.0.1:{port}" in first.data.reason, first.data.reason
    assert not silent_proxy.accepted.is_set(), "the stray proxy from the environment was used"


def test_whatsmeow_logs_reach_the_workers_log_at_the_bots_level_and_nothing_raw_reaches_stdout(
        fleet_factory, launch, tmp_path):
    port = refused_port()
    fleet = fleet_factory([neonize_bot(port, id="loud", log_level="debug", max_reconnect_attempts=1),
                           neonize_bot(port, id="quiet", log_level="info", max_reconnect_attempts=1)],
                          log_dir=str(tmp_path / "logs"))
    service, tap = launch(fleet)
    for bot in ("loud", "quiet"):
        tap.wait_for(lambda m, bot=bot: isinstance(m, Bye) and m.bot == bot, timeout=20, what=f"{bot}'s bye")
    # the forkserver preloaded neonize.utils.log (whose import starts the thread that carries
    # these lines) yet forks from one thread: the log thread is the worker's own
    forkservers = [p for p in psutil.Process(service.pid).children() if "forkserver" in " ".join(p.cmdline())]
    assert [p.num_threads() for p in forkservers] == [1], "the forkserver must fork from a single thread"
    service.signal(signal.SIGTERM)
    assert service.wait(15) == 0
    dialing = "whatsmeow.Client.Socket: Dialing wss://web.whatsapp.com/ws/chat"
    assert dialing in (tmp_path / "logs" / "loud.log").read_text()
    assert dialing not in (tmp_path / "logs" / "quiet.log").read_text(), "Go must log at the bot's level"
    for line in service.log().splitlines():  # only the supervisor's own structured lines
        assert " bot=- pid=" in line, f"raw output reached the supervisor's stdout: {line!r}"


@pytest.mark.parametrize("given, expected", [(None, "1"), ("2", "2")])
def test_each_neonize_workers_go_runtime_runs_one_scheduler_thread_unless_the_operator_says_otherwise(
        fleet_factory, launch, tmp_path, silent_proxy, given, expected):
    # Go's schedtrace is the runtime's own word on its GOMAXPROCS, written to the worker's stderr
    # (captured into its log); the silent proxy keeps the worker dialling meanwhile
    fleet = fleet_factory([neonize_bot(silent_proxy.port)], log_dir=str(tmp_path / "logs"))
    env = {"GODEBUG": "schedtrace=50"} | ({"GOMAXPROCS": given} if given else {})
    service, _tap = launch(fleet, env=env)
    log = tmp_path / "logs" / "n1.log"
    wait_until(lambda: log.exists() and "gomaxprocs=" in log.read_text(), timeout=20, what="the Go runtime's schedtrace")
    service.signal(signal.SIGTERM)
    assert service.wait(15) == 0
    seen = set(re.findall(r"gomaxprocs=(\d+)", log.read_text()))
    assert seen == {expected}, seen
