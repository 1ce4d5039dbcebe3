"""What the supervisor hands a worker at spawn: everything it needs, nothing of other bots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protocol.config import BotConfig

from .beats import beat_phase


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    server_name: str
    bot: BotConfig
    #: auth/<server>/bot_<id>: the only directory this worker may write
    bot_dir: Path
    events_endpoint: str
    commands_endpoint: str
    #: HMAC key for this worker's messages; travels in the pickled spec, never argv or env
    secret: bytes
    #: the worker exits when this process does (0: standalone, no supervisor)
    supervisor_pid: int = 0
    log_dir: Path | None = None
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    #: seconds to wait for the supervisor's subscription before the first message (a hello sent
    #: before it is lost); the supervisor passes the bot's heartbeat_timeout, its own deadline
    #: for that hello, since a loaded supervisor can take seconds to attach a new worker
    subscribe_timeout: float = 5.0
    #: the fleet's start gate (worker/start_gate.py): its directory and how many slots; None
    #: (a worker run by hand): no gate
    start_gate: Path | None = None
    start_slots: int = 1
    #: how many beat groups the fleet has (worker/beats.py); 1 for a worker run by hand
    beat_groups: int = 1

    @property
    def beat_phase(self) -> float:
        """Where in each heartbeat interval this worker beats (worker/beats.py)."""
        return beat_phase(self.bot.id, self.beat_groups)

    @property
    def bot_id(self) -> str:
        return self.bot.id
