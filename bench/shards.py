"""Shards of one fleet as local processes on loopback: for the cluster tests and bench/reshard.py.

Each shard is a real ``botvisor run`` with its own run_dir and auth_dir (a pod's volume), all
sharing one PostgreSQL and one simulated WhatsApp server directory ($BOTVISOR_SIM_SERVER), which
records every second live stream on an account as a StreamReplaced. Every state change of every
shard is read from its tap, so each bot's running intervals per shard are known exactly. Every
process started is tracked by pid and killed at ``close``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil
import zmq

from protocol import StateChange, decode
from protocol.client import ControlClient
from protocol.topics import WELCOME
from worker.backends import simserver

REPO = Path(__file__).resolve().parent.parent
#: fast lease timings, so the failure cases take seconds (docs/cluster.md: the defaults are 15/3/5/2)
FAST = {"lease_ttl": 3.0, "renew_interval": 0.5, "stop_margin": 1.0, "lapse_grace": 0.5}


@dataclass
class Interval:
    shard: int
    pid: int
    start: float  # the ts of ``initializing`` (the worker was spawned)
    end: float | None = None  # the ts of the state after it stopped


@dataclass
class Shard:
    index: int
    root: Path
    run_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    known: set[int] = field(default_factory=set)
    #: tcp mode: control and tap on loopback ports, behind CURVE (as across hosts)
    ports: tuple[int, int] | None = None

    @property
    def config(self) -> Path:
        return self.root / "botvisor.toml"

    @property
    def auth(self) -> Path:
        return self.root / "auth"

    def endpoint(self, role: str) -> str:
        if self.ports is not None and role in ("control", "tap"):
            return f"tcp://127.0.0.1:{self.ports[0 if role == 'control' else 1]}"
        return f"ipc://{self.run_dir / (role + '.sock')}"

    def bot_dir(self, bot: str, server: str) -> Path:
        return self.auth / server / f"bot_{bot}"


class LocalCluster:
    def __init__(self, root: Path, dsn: str, bots: list[str], timings: dict[str, float] | None = None,
                 server: str = "fleet", database_dsn: Callable[[int], str] | None = None, tcp: bool = False) -> None:
        self.root, self.dsn, self.bots, self.server = root, dsn, bots, server
        self.timings = {**FAST, **(timings or {})}
        self.database_dsn = database_dsn or (lambda _k: dsn)
        self.sim_server = root / "simserver"
        self.sim_server.mkdir(parents=True, exist_ok=True)
        self.shards: dict[int, Shard] = {}
        self.intervals: dict[str, list[Interval]] = {b: [] for b in bots}
        self.events: list[tuple[int, StateChange]] = []
        self._lock = threading.Lock()
        self._context = zmq.Context()
        self._taps: dict[int, zmq.Socket] = {}
        self._welcomed: set[int] = set()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader_started = False
        self.tag = os.urandom(3).hex()  # run dirs /tmp/bvc-<tag>-<k>: one {shard} template finds them all
        self.keys: Path | None = None
        self._port_prefix: tuple[int, int] | None = None
        if tcp:  # ports <prefix><k>: one {shard} template finds them all; every shard shares one key pair
            from protocol.curve import generate

            self.keys = root / "keys"
            generate(self.keys, "server")
            generate(self.keys / "clients", "operator")
            self._port_prefix = _free_prefixes()

    # -- configs -------------------------------------------------------------------------
    def shard(self, k: int) -> Shard:
        if k not in self.shards:
            run_dir = Path(f"/tmp/bvc-{self.tag}-{k}")
            shutil.rmtree(run_dir, ignore_errors=True)
            root = self.root / f"shard{k}"
            root.mkdir(parents=True, exist_ok=True)
            ports = None if self._port_prefix is None else (int(f"{self._port_prefix[0]}{k}"),
                                                            int(f"{self._port_prefix[1]}{k}"))
            self.shards[k] = Shard(k, root, run_dir, ports=ports)
        return self.shards[k]

    def write(self, k: int, shards: int) -> None:
        s = self.shard(k)
        lines = ["[supervisor]", f'server_name = "{self.server}"', f'auth_dir = "{s.auth}"', f'run_dir = "{s.run_dir}"',
                 # a generous hello/heartbeat timeout: 60+ workers starting at once on 2 busy cores must
                 # not be taken for hung ones (liveness is not what these runs measure)
                 "heartbeat_interval = 1.0", "heartbeat_timeout = 8.0", "start_interval = 0.0",
                 "stop_timeout = 2.0",
                 "[cluster]", f"shards = {shards}", f"shard = {k}", f'database = "{self.database_dsn(k)}"',
                 f'peer_control = "{self._peer("control")}"', f'peer_tap = "{self._peer("tap")}"']
        lines += [f"{key} = {value!r}" for key, value in self.timings.items()]
        if self.keys is not None:
            lines += ["[endpoints]", f'control = "{s.endpoint("control")}"', f'tap = "{s.endpoint("tap")}"',
                      "[security]", f'server_key = "{self.keys / "server.key_secret"}"',
                      f'authorized_keys = "{self.keys / "clients"}"',
                      f'client_key = "{self.keys / "clients" / "operator.key_secret"}"']
        for bot in self.bots:
            lines += ["[[bots]]", f'id = "{bot}"', 'backend = "simulated"']
        s.config.write_text("\n".join(lines) + "\n")

    def _peer(self, role: str) -> str:
        if self._port_prefix is not None:
            return f"tcp://127.0.0.1:{self._port_prefix[0 if role == 'control' else 1]}{{shard}}"
        return f"ipc:///tmp/bvc-{self.tag}-{{shard}}/{role}.sock"

    def _client_keys(self, endpoint: str) -> Any:
        if self.keys is None or not endpoint.startswith("tcp://"):
            return None
        from protocol.curve import ClientKeys

        server_pub, _ = zmq.auth.load_certificate(str(self.keys / "server.key"))
        pub, sec = zmq.auth.load_certificate(str(self.keys / "clients" / "operator.key_secret"))
        return ClientKeys(pub, sec, server_pub)

    # -- processes -----------------------------------------------------------------------
    def start(self, k: int, shards: int, timeout: float = 30.0, env: dict[str, str] | None = None) -> Shard:
        s = self.shard(k)
        self.write(k, shards)
        self._subscribe(k)
        log = open(s.root / "supervisor.log", "ab")
        env = {**os.environ, simserver.SERVER_ENV: str(self.sim_server), **(env or {})}
        s.proc = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "run", "-c", str(s.config)], cwd=REPO,
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while k not in self._welcomed:
            if s.proc.poll() is not None:
                raise AssertionError(f"shard {k} exited with {s.proc.returncode}:\n{self.log(k)[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"shard {k}'s tap was not welcomed within {timeout} s")
            time.sleep(0.02)
        return s

    def log(self, k: int) -> str:
        return (self.shard(k).root / "supervisor.log").read_text(errors="replace")

    def remember(self, k: int) -> None:
        s = self.shards[k]
        if s.proc is None:
            return
        try:
            s.known.update(p.pid for p in psutil.Process(s.proc.pid).children(recursive=True))
        except psutil.Error:
            pass

    def signal(self, k: int, sig: int) -> None:
        self.remember(k)
        proc = self.shards[k].proc
        assert proc is not None
        proc.send_signal(sig)

    def kill(self, k: int) -> None:
        """SIGKILL the shard's supervisor, wait for it and for every worker it had."""
        self.signal(k, signal.SIGKILL)
        proc = self.shards[k].proc
        assert proc is not None
        proc.wait(10)
        self._wait_gone(self.shards[k].known, 10)

    def stop(self, k: int, timeout: float = 30.0) -> int:
        self.signal(k, signal.SIGTERM)
        proc = self.shards[k].proc
        assert proc is not None
        code = proc.wait(timeout)
        self._wait_gone(self.shards[k].known, 10)
        return code

    @staticmethod
    def _wait_gone(pids: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for pid in pids:
            while True:
                try:
                    if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                        break
                except psutil.Error:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"pid {pid} outlived its shard")
                time.sleep(0.01)

    def control(self, k: int, command: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        endpoint = self.shard(k).endpoint("control")
        with ControlClient(endpoint, timeout=timeout, curve=self._client_keys(endpoint)) as client:
            return client.call(command, args or {})

    def worker_pids(self, k: int) -> dict[str, int]:
        return {b["bot_id"]: b["pid"] for b in self.control(k, "status")["bots"] if b["pid"]}

    def running(self, k: int) -> set[str]:
        """The bots shard ``k`` reports running with a session open."""
        status = self.control(k, "status")
        return {b["bot_id"] for b in status["bots"] if b["container_state"] == "running" and b["bot_status"] == "online"}

    def states(self, k: int) -> dict[str, str]:
        return {b["bot_id"]: b["container_state"] for b in self.control(k, "status")["bots"]}

    def wait(self, condition: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
        """Poll ``condition`` (status calls: not too often, they load the loops being measured)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- shard {k}:\n" + "\n".join(
                    line for line in self.log(k).splitlines() if "botvisor.container" not in line)[-3000:]
                    for k in self.shards)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tails}")
            time.sleep(every)
        return time.monotonic()

    def close(self) -> None:
        for k, s in self.shards.items():
            self.remember(k)
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                try:
                    s.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            for pid in s.known:
                try:
                    psutil.Process(pid).kill()
                except psutil.Error:
                    pass
        self._stop.set()
        if self._reader_started:
            self._reader.join(5)
        for sock in self._taps.values():
            sock.close(0)
        self._context.term()
        for s in self.shards.values():
            shutil.rmtree(s.run_dir, ignore_errors=True)

    # -- what happened -----------------------------------------------------------------------
    def replaced(self) -> list[dict[str, object]]:
        return simserver.replaced(self.sim_server)

    def overlaps(self) -> list[str]:
        """Every moment two shards ran one bot at once, by the taps' state changes."""
        found = []
        with self._lock:
            for bot, runs in self.intervals.items():
                for i, a in enumerate(runs):
                    for b in runs[i + 1:]:
                        if a.shard != b.shard and a.start < (b.end or float("inf")) and b.start < (a.end or float("inf")):
                            found.append(f"{bot}: shard {a.shard} pid {a.pid} and shard {b.shard} pid {b.pid}")
        return found

    def _subscribe(self, k: int) -> None:
        if k in self._taps:
            return
        sock = self._context.socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.setsockopt(zmq.RCVHWM, 1_000_000)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        endpoint = self.shard(k).endpoint("tap")
        from protocol.curve import secure_client

        secure_client(sock, self._client_keys(endpoint))
        sock.connect(endpoint)
        with self._lock:
            self._taps[k] = sock
        if not self._reader_started:
            self._reader_started = True
            self._reader.start()

    def _read(self) -> None:
        poller = zmq.Poller()
        polled: set[int] = set()
        while not self._stop.is_set():
            with self._lock:
                for k, sock in self._taps.items():
                    if k not in polled:
                        poller.register(sock, zmq.POLLIN)
                        polled.add(k)
                socks = {sock: k for k, sock in self._taps.items()}
            for sock, _ in poller.poll(100):
                k = socks[sock]
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frames == [WELCOME]:
                        self._welcomed.add(k)
                        continue
                    if len(frames) != 2:
                        continue
                    message = decode(frames[1])
                    if isinstance(message, StateChange):
                        self._on_state(k, message)

    def _on_state(self, k: int, change: StateChange) -> None:
        with self._lock:
            self.events.append((k, change))
            runs = self.intervals.setdefault(change.bot, [])
            open_run = next((r for r in runs if r.shard == k and r.end is None), None)
            if change.state.value in ("initializing", "running") and open_run is None:
                runs.append(Interval(k, change.pid, change.ts))
            elif change.state.value in ("stopped", "backoff", "failed") and open_run is not None:
                open_run.end = change.ts

    def close_runs_of(self, k: int, at: float) -> None:
        """A SIGKILLed shard says nothing more: its runs ended when its workers did (``at``)."""
        with self._lock:
            for runs in self.intervals.values():
                for r in runs:
                    if r.shard == k and r.end is None:
                        r.end = at


def _free_prefixes() -> tuple[int, int]:
    """Two port prefixes P (ports P0..P9 all free on loopback), for control and tap."""
    import random
    import socket

    found: list[int] = []
    while len(found) < 2:
        prefix = random.randrange(2000, 6000)
        try:
            socks = []
            for k in range(10):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", prefix * 10 + k))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        if prefix not in found:
            found.append(prefix)
    return found[0], found[1]
