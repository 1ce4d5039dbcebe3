"""The backend interface: one WhatsApp session, driven from the worker's main loop.

A backend never blocks the loop: its network calls run on the I/O thread (``offload``,
worker/offload.py) and a method that makes one returns a ``Pending`` the loop resolves. The loop calls ``poll(now)`` whenever the backend's
``wakeup_fd`` is readable or the deadline ``poll`` returned last time has come; the backend
does the work that is due, hands events to ``ctx.emit`` and returns its next deadline.
Because the loop also sends the heartbeats, a backend that wedges the loop stops the
heartbeats too, and the supervisor notices (docs/supervision.md, "Liveness").

To end the worker a backend raises FatalBotError (do not restart) or BotCrash (restart).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from protocol import BotStatus, EventData
from protocol.config import BotConfig

from ..offload import IoLane, Pending
from ..recent import RecentMessages

if TYPE_CHECKING:
    from ..outbox import Outbox


@dataclass
class BackendContext:
    bot: BotConfig
    #: the bot's own auth directory, already created, locked and 0700
    bot_dir: Path
    emit: Callable[[EventData], None]
    log: logging.Logger


class Backend(ABC):
    name: ClassVar[str]
    #: the worker must end with os._exit: the backend's library keeps non-daemon threads
    #: (and exit hooks) that would hold a normal interpreter exit
    hard_exit: ClassVar[bool] = False
    #: the sending methods send under the ``message_id=`` they are given (whatsmeow's
    #: SendRequestExtra.ID), so the outbox may retry an interrupted send without a duplicate
    keeps_message_id: ClassVar[bool] = False

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.status = BotStatus.LOADING
        #: connection attempts since the last successful connect
        self.connection_attempts = 0
        #: the durable, rate-limited queue in front of the sending methods, set by the worker loop
        self.outbox: Outbox | None = None
        #: messages seen lately, by id: what quote, react, edit, revoke and download look up
        self.recent = RecentMessages()
        self._io: IoLane | None = None

    @property
    def io(self) -> IoLane:
        """The worker's I/O thread: every network call runs there, never on the loop (worker/offload.py)."""
        if self._io is None:
            self._io = IoLane(f"{self.name}-io")
        return self._io

    def offload(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Pending:
        """``fn(*args, **kwargs)`` on the I/O thread; the result (or exception) arrives on the loop."""
        return self.io.run(fn, *args, **kwargs)

    def new_message_id(self) -> str | None:
        """A fresh WhatsApp message id for the next send, chosen before its first attempt; None
        when this backend cannot send under a chosen id (then WhatsApp's own id is known once sent)."""
        return None

    @abstractmethod
    def start(self, now: float) -> None:
        """Begin connecting (never block)."""

    @abstractmethod
    def poll(self, now: float) -> float | None:
        """Do what is due at monotonic time ``now``; return the next deadline, or None."""

    def wakeup_fd(self) -> int | None:
        """A file descriptor that becomes readable when the backend has work (or None)."""
        return None

    def stop(self) -> None:
        """Release the session quickly; the process exits right after."""

    # -- acting as the bot (each returns plain data for the command reply) -------------
    @abstractmethod
    def send_text(self, to: str, text: str, *, message_id: str | None = None) -> dict[str, Any]:
        """Send ``text``; under ``message_id`` when given (see ``keeps_message_id``)."""

    @abstractmethod
    def set_presence(self, presence: str, chat: str | None = None) -> dict[str, Any]:
        """``available``/``unavailable`` for the account; ``composing``/``paused``/``recording`` in ``chat``."""

    @abstractmethod
    def mark_read(self, chat: str, message_ids: list[str], sender: str | None = None) -> dict[str, Any]: ...

    @abstractmethod
    def logout(self) -> dict[str, Any]: ...

    # -- the WhatsApp operations beyond text (worker/wa_operations.py checks their arguments) -----
    # Both backends implement every one; the defaults only name what a backend lacks.
    def _lacks(self, op: str) -> Any:
        from ..errors import CommandError

        raise CommandError(f"the {self.name} backend cannot {op}")

    def send_media(self, to: str, kind: str, path: str, caption: str | None = None, file_name: str | None = None,
                   mimetype: str | None = None, quote: str | None = None, *,
                   message_id: str | None = None) -> dict[str, Any]:
        return self._lacks("send media")

    def react(self, chat: str, target: str, emoji: str, sender: str | None = None, *,
              message_id: str | None = None) -> dict[str, Any]:
        return self._lacks("react")

    def edit(self, chat: str, target: str, text: str, *, message_id: str | None = None) -> dict[str, Any]:
        return self._lacks("edit")

    def revoke(self, chat: str, target: str, sender: str | None = None, *,
               message_id: str | None = None) -> dict[str, Any]:
        return self._lacks("revoke")

    def download(self, target: str | None, media: dict[str, Any] | None, limit: int) -> dict[str, Any]:
        return self._lacks("download media")

    def subscribe_presence(self, jid: str) -> dict[str, Any]:
        return self._lacks("subscribe to presence")

    def check_numbers(self, numbers: list[str]) -> dict[str, Any]:
        return self._lacks("check numbers")

    def user_info(self, jids: list[str]) -> dict[str, Any]:
        return self._lacks("look up users")

    def group_info(self, group: str) -> dict[str, Any]:
        return self._lacks("look up groups")

    def reject_call(self, call_id: str, caller: str) -> dict[str, Any]:
        return self._lacks("reject calls")

    def simulate(self, args: dict[str, Any]) -> dict[str, Any]:
        """Inject incoming traffic: only a simulated session can (SimulatedBackend overrides it)."""
        from ..errors import CommandError

        raise CommandError(f"simulate needs the simulated backend; this bot runs {self.name} (a real session "
                           "receives only what WhatsApp sends)")


def load_backend(name: str) -> type[Backend]:
    """The backend class for ``name``; neonize is imported only by the bots that use it."""
    if name == "simulated":
        from .simulated import SimulatedBackend

        return SimulatedBackend
    if name == "neonize":
        from .neonize import NeonizeBackend

        return NeonizeBackend
    raise ValueError(f"unknown backend {name!r}")
