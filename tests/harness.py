"""Test harness: real supervisors on temporary configs, taps, and no process left behind.

Every process a test starts is tracked by pid (the supervisor, and every worker pid seen on
the tap or among its descendants) and killed and reaped at teardown, also when the test
fails. Waits synchronise on messages (a hello, a pid change), each bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import psutil
import zmq

from bench.toml_writer import render_config
from protocol import Hello, Message, decode
from protocol.client import ControlClient
from protocol.topics import WELCOME

REPO = Path(__file__).resolve().parent.parent


#: the default heartbeat_timeout of test fleets (see Fleet.write)
LOADED_MACHINE_TIMEOUT = 5.0


@dataclass
class Fleet:
    """A temporary configuration: its file, a short run_dir (unix socket paths are short)."""

    root: Path
    run_dir: Path
    server: str = "test"
    supervisor: dict[str, Any] = field(default_factory=dict)
    bots: list[dict[str, Any]] = field(default_factory=list)
    extra: str = ""
    #: bots the harness starts over the control socket once the tap is connected
    deferred: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.root / "botvisor.toml"

    @property
    def auth_dir(self) -> Path:
        return self.root / "auth"

    def endpoint(self, role: str) -> str:
        return f"ipc://{self.run_dir / (role + '.sock')}"

    def bot_dir(self, bot_id: str) -> Path:
        return self.auth_dir / self.server / f"bot_{bot_id}"

    def write(self) -> Path:
        # heartbeats every 0.2 s, but a worker is judged stale only after 5 s without one: on a
        # loaded machine (2 noisy cores) a worker at nice 10 can miss a tighter window, and be
        # replaced under a test that did not ask for it. Tests of liveness set their own.
        settings = {"server_name": self.server, "auth_dir": str(self.auth_dir), "run_dir": str(self.run_dir),
                    "heartbeat_interval": 0.2, "heartbeat_timeout": LOADED_MACHINE_TIMEOUT, "start_interval": 0.0,
                    "stop_timeout": 2.0, **self.supervisor}
        self.config_path.write_text(render_config(settings, self.bots, self.extra))
        return self.config_path


def make_fleet(tmp_path: Path, bots: Iterable[str | dict[str, Any]] = ("b1",), **supervisor: Any) -> Fleet:
    run_dir = Path(tempfile.mkdtemp(prefix="bv-", dir="/tmp"))
    shutil.rmtree(run_dir)  # botvisor creates it, 0700
    entries = [dict(b) if isinstance(b, dict) else {"id": b, "backend": "simulated"} for b in bots]
    deferred = []
    for entry in entries:  # started by the harness once its tap is connected: no hello is missed
        entry.setdefault("backend", "simulated")
        if "autostart" not in entry:
            entry["autostart"] = False
            deferred.append(entry["id"])
    fleet = Fleet(root=tmp_path, run_dir=run_dir, supervisor=supervisor, bots=entries, deferred=deferred)
    fleet.write()
    return fleet


class Tap:
    """An in-test tap: a SUB socket on the supervisor's tap endpoint, decoding as it reads."""

    def __init__(self, endpoint: str, prefix: bytes = b"") -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 1_000_000)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 50)
        self.socket.setsockopt(zmq.SUBSCRIBE, prefix)
        self.socket.connect(endpoint)
        self.seen: list[Message] = []
        self.worker_pids: set[int] = set()
        self.welcomed = False

    def wait_welcome(self, timeout: float = 10.0, service: Service | None = None) -> None:
        """Block until the supervisor has our subscription (its welcome message arrived)."""
        deadline = time.monotonic() + timeout
        while not self.welcomed:
            if service is not None and service.proc.poll() is not None:
                raise AssertionError(f"the supervisor exited with {service.proc.returncode}:\n{service.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the tap was not welcomed by a supervisor within {timeout} s")
            self.read(0.2)

    def read(self, timeout: float) -> Message | None:
        if not self.socket.poll(int(timeout * 1000)):
            return None
        frames = self.socket.recv_multipart()
        if frames == [WELCOME]:
            self.welcomed = True
            return None
        assert len(frames) == 2, f"a tap must get [topic, payload], got {len(frames)} frames"
        message = decode(frames[1])
        self.seen.append(message)
        if isinstance(message, Hello):
            self.worker_pids.add(message.pid)
        return message

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 10.0, what: str = "message",
                 history: bool = True) -> Message:
        """The first message (already seen, with ``history``, or arriving) that matches."""
        if history:
            for message in self.seen:
                if predicate(message):
                    return message
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                recent = "\n  ".join(repr(m)[:200] for m in self.seen[-8:])
                raise AssertionError(f"no {what} within {timeout} s; last messages:\n  {recent}")
            message = self.read(min(left, 0.5))
            if message is not None and predicate(message):
                return message

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


class Service:
    """``botvisor run`` as a real child process, as a user or systemd would start it."""

    def __init__(self, fleet: Fleet, env: dict[str, str] | None = None, args: Iterable[str] = ()) -> None:
        self.fleet = fleet
        self.log_path = fleet.root / "supervisor.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.cli", "run", "-c", str(fleet.config_path), *args],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        self.pid = self.proc.pid
        self.known_pids: set[int] = set()

    def descendants(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []
        self.known_pids.update(p.pid for p in found)
        return found

    def signal(self, sig: int) -> None:
        self.descendants()
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def control(self, command: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        with ControlClient(self.fleet.endpoint("control"), timeout=timeout) as client:
            return client.call(command, args or {})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cleanup(self, extra_pids: Iterable[int] = ()) -> list[int]:
        """Kill everything this service started (by pid); return the pids that were still alive."""
        self.descendants()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        survivors = []
        for pid in set(self.known_pids) | set(extra_pids):
            try:
                process = psutil.Process(pid)
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                survivors.append(pid)
                process.kill()
            except psutil.Error:
                pass
        self._log.close()
        return survivors


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_embedded(supervisor: Any, thread: Any) -> None:
    """End a Supervisor that runs on ``thread`` of the test's own process; its workers are
    killed by pid should its shutdown not have stopped them."""
    supervisor.shutdown()
    thread.join(timeout=20)
    for process in [c.process for c in supervisor.manager if c.process is not None]:
        kill_pid(process.pid)


def run_scenario(module: str, scenario: str, timeout: float) -> dict[str, Any]:
    """``python -m module scenario`` in a fresh interpreter (scenarios that load Go or fill
    queues must not share the test's process): the JSON result it prints last, without "error"."""
    done = subprocess.run([sys.executable, "-m", module, scenario], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    return result


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll a cheap condition (a pid gone, a file there) until it holds; bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
