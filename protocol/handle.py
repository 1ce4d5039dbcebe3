"""BotHandle: the bot living in a worker process, as the original's ``getBot()`` returned it.

Each method sends one command through the supervisor's control endpoint to the bot's worker
and returns the worker's reply (plain data), or raises:

- BotNotRunning: the worker is not running (stopped, starting, in backoff, failed);
- CommandTimeout: the worker did not answer within ``timeout`` seconds;
- UnknownBot: no such bot is configured;
- NotRunning: no supervisor answers;
- ControlError: anything else the worker or supervisor refused (the message says what).

The calls block the caller until the reply comes, so use a handle from your own code (a
script, a web app, another thread), never from a listener inside the supervisor's loop:
that loop is the one that must deliver the reply.
"""

from __future__ import annotations

from typing import Any

from .client import (  # re-exported: a handle's user needs only this module
    BotNotRunning,
    CommandTimeout,
    ControlClient,
    ControlError,
    NotRunning,
    UnknownBot,
)

__all__ = ["BotHandle", "BotNotRunning", "CommandTimeout", "ControlError", "NotRunning", "UnknownBot"]

#: seconds the client waits beyond the worker timeout, for the supervisor's own answer
MARGIN = 2.0


class BotHandle:
    def __init__(self, bot_id: str, client: ControlClient, *, timeout: float = 10.0) -> None:
        self.bot_id = bot_id
        self.client = client
        #: seconds the worker may take to answer a command
        self.timeout = timeout

    @classmethod
    def for_config(cls, config: Any, bot_id: str, *, timeout: float | None = None) -> BotHandle:
        """A handle on ``bot_id`` of the supervisor ``config`` describes."""
        wait = timeout if timeout is not None else config.supervisor.command_timeout
        return cls(bot_id, ControlClient.for_config(config, timeout=wait + MARGIN), timeout=wait)

    def call(self, command: str, **args: Any) -> Any:
        args = {"bot": self.bot_id, "timeout": self.timeout, **args}
        return self.client.call(command, args, timeout=self.timeout + MARGIN)

    def send_message(self, to: str, text: str) -> dict[str, Any]:
        """Send ``text`` to ``to`` (a jid), through the bot's durable outbox.

        Returns ``{"id": send id, "state": "sent" | "queued", "message_id": WhatsApp id, "to",
        ...}`` at once: ``timestamp`` when sent, ``position`` and ``expected_delay`` when queued.
        The outcome comes as a ``send-status`` event with the same ``id`` (docs/sends.md)."""
        return self.call("send", to=to, text=text)

    send_text = send_message

    def send_status(self, send_id: str) -> dict[str, Any]:
        """What became of a send, by the ``id`` its reply gave: ``{"id", "state", "message_id", ...}``."""
        return self.call("send_status", id=send_id)

    def set_presence(self, presence: str, chat: str | None = None) -> dict[str, Any]:
        """available, unavailable, composing, paused or recording (in ``chat``, for typing)."""
        if chat is None:
            return self.call("presence", presence=presence)
        return self.call("presence", presence=presence, chat=chat)

    def mark_read(self, chat: str, message_ids: list[str], sender: str | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"chat": chat, "message_ids": list(message_ids)}
        if sender is not None:
            args["sender"] = sender
        return self.call("mark_read", **args)

    def logout(self) -> dict[str, Any]:
        """Log out of WhatsApp: the session is deleted and the container ends in ``failed``."""
        return self.call("logout")

    def backup(self) -> dict[str, Any]:
        return self.call("backup")

    def simulate(self, kind: str = "message", **args: Any) -> dict[str, Any]:
        """Inject incoming traffic into a SIMULATED bot (``from_`` for ``from``); returns
        ``{"event": type, "id": ..., "data": the event's data}``."""
        if "from_" in args:
            args["from"] = args.pop("from_")
        return self.call("simulate", kind=kind, **args)

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The container's event history, oldest first (answered by the supervisor)."""
        args = {"bot": self.bot_id} if limit is None else {"bot": self.bot_id, "limit": limit}
        return self.client.call("history", args)["events"]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> BotHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BotHandle({self.bot_id!r} via {self.client.endpoint})"
