"""Gateway test kit: a real gateway process, real HTTP receivers on loopback, and a signature
check written from the docs (not the gateway's code), so a wrong signature fails the tests.

Every process is tracked by pid and killed at teardown; waits poll a condition with a bound.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import httpx

from bench.toml_writer import array_of_tables, table

from .harness import REPO, Fleet

SECRET = "test-secret-" + "x" * 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def independent_verify(secret: str, body: bytes, header: str, tolerance: float = 300) -> bool:
    """docs/webhooks.md's receiver check, written out again here."""
    parts = {}
    for item in header.split(","):
        k, _, v = item.partition("=")
        parts[k.strip()] = v.strip()
    if not parts.get("t", "").isdigit() or abs(time.time() - int(parts["t"])) > tolerance:
        return False
    signed = parts["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


#: responder(received_so_far_for_this_event_id, request) -> (status, headers, delay seconds)
Responder = Callable[[int, Received], tuple[int, dict[str, str], float]]


def always(status: int = 200, delay: float = 0.0) -> Responder:
    return lambda n, r: (status, {}, delay)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1, recording every request it answers."""

    responder: Responder = field(default_factory=always)
    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tries: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except OSError:  # the gateway hung up (killed by the test, or its timeout)
                    pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                event = headers.get("botvisor-event-id", "")
                with receiver.lock:
                    n = receiver._tries.get(event, 0)
                    receiver._tries[event] = n + 1
                probe = Received(time.time(), self.path, headers, body, 0)
                status, extra, delay = receiver.responder(n, probe)
                if delay:
                    time.sleep(delay)
                probe.status = status
                with receiver.lock:
                    receiver.requests.append(probe)
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the gateway gave up on us (its timeout, or it was killed)
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [r.json for r in self.accepted() if type_ is None or r.json["type"] == type_]


def webhook_toml(hooks: list[dict[str, Any]], gateway: dict[str, Any]) -> str:
    return "\n".join(table("gateway", gateway) + array_of_tables("gateway.webhooks", hooks)) + "\n"


def hook(receiver: Receiver, **settings: Any) -> dict[str, Any]:
    """A webhook entry for ``receiver`` with fast retries (tests must not wait minutes)."""
    entry: dict[str, Any] = {"url": receiver.url, "secret": SECRET, "timeout": 5.0}
    retry = {"initial": 0.05, "factor": 2.0, "max": 0.5, "jitter": 0.1, **settings.pop("retry", {})}
    entry.update(settings)
    entry["retry"] = retry
    return entry


def configure(fleet: Fleet, hooks: list[dict[str, Any]], **gateway: Any) -> int:
    """Give ``fleet`` a [gateway] table; returns its port."""
    port = gateway.pop("port", None) or free_port()
    settings = {"listen": f"127.0.0.1:{port}", "data_dir": str(fleet.root / "gw"), **gateway}
    fleet.extra = webhook_toml(hooks, settings)
    fleet.write()
    return port


class GatewayProcess:
    """``python -m gateway -c FILE`` as a real child process."""

    def __init__(self, fleet: Fleet, port: int) -> None:
        self.fleet, self.port = fleet, port
        self.log_path = fleet.root / f"gateway-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "-c", str(fleet.config_path),
                                      "--log-level", "info"], cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=dict(os.environ))
        self.pid = self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the gateway was not ready within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def add_key(fleet: Fleet, name: str, *extra: str) -> str:
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "gateway", "keys", "add", name, *extra,
                          "-c", str(fleet.config_path)], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args, "-c", str(fleet.config_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Stack:
    """A supervisor, a tap, a gateway and receivers: everything a gateway test starts."""

    def __init__(self) -> None:
        self.services: list[Any] = []
        self.taps: list[Any] = []
        self.gateways: list[GatewayProcess] = []
        self.receivers: list[Receiver] = []

    def receiver(self, responder: Responder | None = None) -> Receiver:
        r = Receiver(responder or always()).start()
        self.receivers.append(r)
        return r

    def supervisor(self, fleet: Fleet) -> Any:
        from .harness import Service, Tap

        tap = Tap(fleet.endpoint("tap"))
        service = Service(fleet)
        self.services.append(service)
        self.taps.append(tap)
        tap.wait_welcome(timeout=15, service=service)
        service.tap = tap
        return service

    def gateway(self, fleet: Fleet, port: int) -> GatewayProcess:
        gw = GatewayProcess(fleet, port)
        self.gateways.append(gw)
        gw.wait_ready()
        return gw

    def start_bots(self, service: Any) -> None:
        if service.fleet.deferred:
            service.control("start", {"bots": service.fleet.deferred})

    def close(self) -> None:
        for gw in self.gateways:
            gw.kill()
        for service, tap in zip(self.services, self.taps):
            service.cleanup(tap.worker_pids)
            tap.close()
        for r in self.receivers:
            r.stop()


def stack_fixture() -> Any:
    import pytest

    @pytest.fixture
    def stack() -> Any:
        s = Stack()
        try:
            yield s
        finally:
            s.close()

    return stack
