"""A real supervisor, gateway and webhook receiver for the dashboard's browser tests.

Built from the gateway's test kit (tests/gateway_harness.py): every process is a child started
here and killed by pid at teardown (the supervisor's workers too, every pid seen on the tap or
among its children). Waits are on events: the tap's welcome, /readyz, a worker's hello.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.keys import KeyStore
from gateway.runtime import keys_path
from protocol.config import load_config

from ..gateway_harness import GatewayProcess, Receiver, always, configure, hook
from ..harness import Fleet, Service, Tap, make_fleet

#: what the webhook's URL and secret carry that no page may show
URL_TOKEN, SECRET = "token=abc", "hook-secret-123"


@dataclass
class Stack:
    fleet: Fleet
    service: Service
    tap: Tap
    gateway: GatewayProcess
    #: refuses every delivery (400, never retried): dead letters for the webhooks page
    receiver: Receiver
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.gateway.base

    def status(self, bot: str) -> dict[str, Any]:
        for entry in self.service.control("status")["bots"]:
            if entry["bot_id"] == bot:
                return entry
        raise KeyError(bot)

    def close(self) -> None:
        self.gateway.kill()
        self.receiver.stop()
        self.service.cleanup(self.tap.worker_pids)
        self.tap.close()


def start_stack(root: Path, bots: list[dict[str, Any]], start: list[str]) -> Stack:
    """``start``: the bots started once the tap listens (the others stay stopped until a test starts them)."""
    receiver = Receiver(always(400)).start()
    # heartbeats a little slower than the harness default: a busy CI machine must not fail them
    fleet = make_fleet(root, bots, heartbeat_interval=0.5)
    port = configure(fleet, [hook(receiver, name="crm", url=f"{receiver.url}?{URL_TOKEN}", secret=SECRET,
                                  bots=["b1"], events=["state"])])
    store = KeyStore(keys_path(load_config(fleet.config_path)))
    keys = {"admin": store.add("admin"), "reader": store.add("reader", read_only=True),
            "only-b1": store.add("only-b1", bots=["b1"])}
    tap = Tap(fleet.endpoint("tap"))
    service = Service(fleet)
    gateway = None
    try:
        tap.wait_welcome(timeout=15, service=service)
        if start:
            service.control("start", {"bots": start})
        gateway = GatewayProcess(fleet, port)
        gateway.wait_ready()
        for bot in start:  # every started bot has said hello (its row is complete)
            tap.wait_for(lambda m, b=bot: type(m).__name__ == "Hello" and m.bot == b, timeout=15,
                         what=f"{bot}'s hello")
        return Stack(fleet, service, tap, gateway, receiver, keys)
    except BaseException:
        if gateway is not None:
            gateway.kill()
        receiver.stop()
        service.cleanup(tap.worker_pids)
        tap.close()
        raise
