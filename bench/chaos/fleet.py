"""The soak's fleet: its configuration, and the supervisor run as a real child process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.client import ControlClient
from protocol.config import SupervisorSettings

from ..toml_writer import render_config

REPO = Path(__file__).resolve().parents[2]
#: the driver's pid in it: the checks find this fleet's workers by title (botvisor worker
#: <server>/<bot>), and two soaks on one machine (CI beside a by-hand run) must not count each other's
SERVER = f"chaos{os.getpid()}"
HEARTBEAT = 0.5
TIMEOUT = 2.0  # heartbeat_timeout: a stopped worker is judged stale after this
BACKOFF = {"initial": 0.1, "factor": 2.0, "max": 2.0, "jitter": 0.2, "reset_after": 5.0,
           "max_restarts": 100000, "restart_window": 60.0}
FATAL_BOT = "fatal"
#: the workers' nice below the supervisor (the default; the soak's busy processes take it too)
NICE = SupervisorSettings().nice


def bots() -> list[dict[str, Any]]:
    """30 bots: 20 plain (some chatty, some with a child process), 4 unpaired, 5 with fault
    knobs (disconnects, failed redials), 1 that gets a fatal cause (banned)."""
    found: list[dict[str, Any]] = []
    for i in range(20):
        sim: dict[str, Any] = {"seed": i, "message_rate": 2.0 if i % 4 == 0 else 0.0}
        if i % 5 == 1:
            sim["spawn_child"] = True
        found.append({"id": f"b{i:02d}", "simulated": sim})
    for i in range(4):
        found.append({"id": f"u{i}", "simulated": {"paired": False, "pair_after": 2.0 if i % 2 else 10000.0,
                                                   "qr_every": 1.0}})
    for i in range(5):
        found.append({"id": f"f{i}", "simulated": {"disconnect_every": 2.0 + i, "reconnect_failures": i % 3,
                                                   "presence_rate": 1.0}})
    found.append({"id": FATAL_BOT, "simulated": {"ban_after": 1.0}})
    return found


def render(root: Path, run_dir: Path, entries: list[dict[str, Any]]) -> str:
    return render_config({"server_name": SERVER, "auth_dir": str(root / "auth"), "run_dir": str(run_dir),
                          "heartbeat_interval": HEARTBEAT, "heartbeat_timeout": TIMEOUT, "start_interval": 0.02,
                          "stop_timeout": 1.0, "command_timeout": 2.0, "tap_queue": 1000, "event_history": 50,
                          "backoff": BACKOFF}, entries)


@dataclass
class Fleet:
    root: Path
    run_dir: Path
    entries: list[dict[str, Any]] = field(default_factory=bots)

    @classmethod
    def create(cls) -> Fleet:
        root = Path(tempfile.mkdtemp(prefix="botvisor-chaos-"))
        run_dir = Path(tempfile.mkdtemp(prefix="bvc-", dir="/tmp"))
        shutil.rmtree(run_dir)
        fleet = cls(root, run_dir)
        fleet.write()
        return fleet

    @property
    def config_path(self) -> Path:
        return self.root / "botvisor.toml"

    def endpoint(self, role: str) -> str:
        return f"ipc://{self.run_dir / (role + '.sock')}"

    def bot_dir(self, bot_id: str) -> Path:
        return self.root / "auth" / SERVER / f"bot_{bot_id}"

    def write(self, text: str | None = None) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text if text is not None else render(self.root, self.run_dir, self.entries))
        os.replace(tmp, self.config_path)

    def ids(self) -> list[str]:
        return [b["id"] for b in self.entries]

    def should_run(self) -> list[str]:
        return [b for b in self.ids() if b != FATAL_BOT]

    def start_supervisor(self, wrapper: str | None = None) -> subprocess.Popen[bytes]:
        log = open(self.root / "supervisor.log", "ab")
        command = [sys.executable, wrapper] if wrapper else [sys.executable, "-m", "supervisor.cli"]
        return subprocess.Popen(command + ["run", "-c", str(self.config_path)], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)

    def control(self, command: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
        with ControlClient(self.endpoint("control"), timeout=timeout) as client:
            return client.call(command, args or {})

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
