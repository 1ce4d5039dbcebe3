"""A real supervisor and a real gateway (``botvisor gateway``) for the dashboard's browser tests.

Both are child processes started here and killed by pid at teardown (the supervisor's workers
too, every pid seen on the tap or among its children). Waits are on events: the tap's welcome,
the gateway's /readyz, a worker's hello.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.keys import KeyStore
from gateway.runtime import keys_path
from protocol.config import load_config

from ..harness import REPO, Fleet, Service, Tap, kill_pid, make_fleet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A real HTTP webhook receiver on loopback that refuses every delivery (400: never retried)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                received.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.send_response(400)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GatewayProcess:
    def __init__(self, fleet: Fleet) -> None:
        self.log_path = fleet.root / "gateway.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "gateway", "-c", str(fleet.config_path)],
                                     cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))

    def wait_ready(self, base: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the gateway was not ready within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        kill_pid(self.proc.pid)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


@dataclass
class Stack:
    fleet: Fleet
    service: Service
    tap: Tap
    gateway: GatewayProcess
    base: str
    keys: dict[str, str] = field(default_factory=dict)
    receiver: Receiver | None = None

    def status(self, bot: str) -> dict[str, Any]:
        for entry in self.service.control("status")["bots"]:
            if entry["bot_id"] == bot:
                return entry
        raise KeyError(bot)

    def close(self) -> None:
        self.gateway.stop()
        if self.receiver is not None:
            self.receiver.close()
        self.service.cleanup(self.tap.worker_pids)
        self.tap.close()


#: a webhook to the refusing receiver, its URL and secret carrying what no page may show
WEBHOOK = """
[[gateway.webhooks]]
name = "crm"
url = "http://127.0.0.1:{port}/hook?token=abc"
secret = "hook-secret-123"
bots = ["b1"]
events = ["state"]
"""


def start_stack(root: Path, bots: list[dict[str, Any]], start: list[str]) -> Stack:
    """Supervisor + gateway + receiver; ``start``: bots started once the tap listens (the rest stay stopped)."""
    port = free_port()
    receiver = Receiver()
    # heartbeats a little slower than the harness default: a busy CI machine must not fail them
    fleet = make_fleet(root, bots, heartbeat_interval=0.5)
    fleet.extra = f'[gateway]\nlisten = "127.0.0.1:{port}"\n' + WEBHOOK.format(port=receiver.port)
    fleet.write()
    config = load_config(fleet.config_path)
    store = KeyStore(keys_path(config))
    keys = {"admin": store.add("admin"), "reader": store.add("reader", read_only=True),
            "only-b1": store.add("only-b1", bots=["b1"])}
    tap = Tap(fleet.endpoint("tap"))
    service = Service(fleet)
    gateway = None
    try:
        tap.wait_welcome(timeout=15, service=service)
        if start:
            service.control("start", {"bots": start})
        gateway = GatewayProcess(fleet)
        base = f"http://127.0.0.1:{port}"
        gateway.wait_ready(base)
        stack = Stack(fleet, service, tap, gateway, base, keys, receiver)
        for bot in start:  # every started bot has said hello (its row is complete)
            tap.wait_for(lambda m, b=bot: getattr(m, "bot", None) == b and type(m).__name__ == "Hello",
                         timeout=15, what=f"{bot}'s hello")
        return stack
    except BaseException:
        receiver.close()
        if gateway is not None:
            gateway.stop()
        service.cleanup(tap.worker_pids)
        tap.close()
        raise
