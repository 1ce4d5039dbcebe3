"""The configuration files of one run: botvisor's TOML, supervisord's conf, circus's ini.

All three supervise the same program with the same bots ``b1..bN``: botvisor forks its worker
from its forkserver; the peers exec ``python -m worker --config FILE --bot bK`` on the same
TOML (it only supplies the worker's settings there; nobody listens on its sockets).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .toml_writer import render_config, toml_value  # noqa: F401  (toml_value: bench/webhooks.py imports it here)

REPO = Path(__file__).resolve().parent.parent

#: restart policy used by every botvisor run of the bench: reset_after is short so that each
#: kill of the crash scenarios (waits of at least CRASH_MIN_WAIT) is the first of a streak,
#: which botvisor restarts at once; max_restarts is high so repeated kills never reach failed
BACKOFF = {"initial": 0.5, "factor": 2.0, "max": 60.0, "jitter": 0.2, "reset_after": 0.2,
           "max_restarts": 1000, "restart_window": 300.0}


def bot_ids(n: int) -> list[str]:
    return [f"b{i}" for i in range(1, n + 1)]


@dataclass
class BotvisorSettings:
    """What varies between the bench's botvisor runs; everything else is botvisor's default."""

    n: int
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float | None = None
    backend: str = "simulated"
    message_rate: float = 0.0
    #: seconds from a worker's start to its (simulated) connection, when its traffic begins
    connect_delay: float | None = None
    start_interval: float = 0.0
    stop_timeout: float | None = None  # None: botvisor's default
    backoff: dict[str, float] = field(default_factory=lambda: dict(BACKOFF))

    def describe(self) -> str:
        timeout = self.heartbeat_timeout if self.heartbeat_timeout is not None else 3 * self.heartbeat_interval
        parts = [f"heartbeat_interval={self.heartbeat_interval:g}s", f"heartbeat_timeout={timeout:g}s",
                 f"start_interval={self.start_interval:g}s",
                 f"stop_timeout={'default (10s)' if self.stop_timeout is None else f'{self.stop_timeout:g}s'}",
                 "backoff: " + ", ".join(f"{k}={v:g}" for k, v in self.backoff.items())]
        return "; ".join(parts)


def write_botvisor_config(root: Path, settings: BotvisorSettings, server: str = "bench") -> Path:
    """A botvisor TOML for ``settings.n`` bots under ``root`` (auth/, run/ inside it)."""
    root.mkdir(parents=True, exist_ok=True)
    sup: dict[str, Any] = {"server_name": server, "auth_dir": str(root / "auth"), "run_dir": str(root / "run"),
                           "heartbeat_interval": settings.heartbeat_interval,
                           "start_interval": settings.start_interval}
    if settings.heartbeat_timeout is not None:
        sup["heartbeat_timeout"] = settings.heartbeat_timeout
    if settings.stop_timeout is not None:
        sup["stop_timeout"] = settings.stop_timeout
    bots: list[dict[str, Any]] = []
    for bot in bot_ids(settings.n):
        entry: dict[str, Any] = {"id": bot, "backend": settings.backend}
        if settings.backend == "simulated" and settings.message_rate:
            entry["simulated"] = {"message_rate": float(settings.message_rate)}
            if settings.connect_delay is not None:
                entry["simulated"]["connect_delay"] = float(settings.connect_delay)
        bots.append(entry)
    path = root / "botvisor.toml"
    path.write_text(render_config({**sup, "backoff": settings.backoff}, bots))
    return path


def worker_command(config: Path, bot: str) -> list[str]:
    """The standalone worker every peer runs (botvisor's own interpreter and worker)."""
    return [sys.executable, "-m", "worker", "--config", str(config), "--bot", bot, "--subscribe-timeout", "0"]


def write_supervisord_config(root: Path, worker_config: Path, n: int) -> Path:
    """supervisord at its fastest honest restart: autorestart=true, startsecs=0."""
    command = " ".join(worker_command(worker_config, "b%(process_num)d"))
    text = f"""\
[supervisord]
nodaemon = true
logfile = {root / 'supervisord.log'}
pidfile = {root / 'supervisord.pid'}
childlogdir = {root}
minfds = 4096

[program:bots]
command = {command}
directory = {REPO}
process_name = b%(process_num)d
numprocs = {n}
numprocs_start = 1
autostart = true
autorestart = true
startsecs = 0
stdout_logfile = NONE
stderr_logfile = NONE
"""
    path = root / "supervisord.conf"
    path.write_text(text)
    return path


def write_circus_config(root: Path, worker_config: Path, n: int, check_delay: float | None) -> Path:
    """circusd with respawn=true and either its default check_delay or the given one."""
    command = " ".join(worker_command(worker_config, "b$(circus.wid)"))
    delay = f"check_delay = {check_delay:g}\n" if check_delay is not None else ""
    text = f"""\
[circus]
{delay}endpoint = ipc://{root / 'ctl.sock'}
pubsub_endpoint = ipc://{root / 'pub.sock'}
stats_endpoint = ipc://{root / 'stats.sock'}
statsd = false

[watcher:bots]
cmd = {command}
working_dir = {REPO}
numprocesses = {n}
respawn = true
copy_env = true
"""
    path = root / "circus.ini"
    path.write_text(text)
    return path
