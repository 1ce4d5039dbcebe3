"""How a worker ends on purpose: each error carries the exit code the supervisor acts on."""

from __future__ import annotations

from protocol import exit_codes
from protocol.errors import BotvisorError


class WorkerExit(BotvisorError):
    """End the worker with ``exit_code``; ``code`` is the machine-readable reason."""

    exit_code = exit_codes.CRASH

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 expires_at: float | None = None, file: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status, self.expires_at, self.file = status, expires_at, file


class FatalBotError(WorkerExit):
    """Fatal for this bot (logged out, banned, outdated, bad credentials): do not restart."""

    exit_code = exit_codes.FATAL


class BotCrash(WorkerExit):
    """Transient trouble that outlived the worker's own retries: restart under the policy."""

    exit_code = exit_codes.CRASH


class CommandError(BotvisorError):
    """A command from the operator could not be carried out; the reply says why."""
