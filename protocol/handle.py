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


def _given(**args: Any) -> dict[str, Any]:
    """The optional arguments that were given (None means "not given")."""
    return {key: value for key, value in args.items() if value is not None}


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

    def send_message(self, to: str, text: str, *, quote: str | None = None,
                     mentions: list[str] | None = None) -> dict[str, Any]:
        """Send ``text`` to ``to`` (a jid), through the bot's durable outbox, replying to message
        ``quote`` and mentioning ``mentions`` when given.

        Returns ``{"id": send id, "state": "sent" | "queued", "message_id": WhatsApp id, "to",
        ...}`` at once: ``timestamp`` when sent, ``position`` and ``expected_delay`` when queued.
        The outcome comes as a ``send-status`` event with the same ``id`` (docs/sends.md)."""
        return self.call("send", to=to, text=text, **_given(quote=quote, mentions=mentions))

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

    # -- the WhatsApp operations (docs/control.md, "Bot operations") -------------------------------
    def send_media(self, to: str, kind: str, path: str, *, caption: str | None = None, file_name: str | None = None,
                   mimetype: str | None = None, quote: str | None = None) -> dict[str, Any]:
        """Send a file (an absolute path on the bot's host): image, video, audio, voice, document, sticker."""
        return self.call("send_media", to=to, kind=kind, path=path,
                         **_given(caption=caption, file_name=file_name, mimetype=mimetype, quote=quote))

    def react(self, chat: str, message_id: str, emoji: str, *, sender: str | None = None) -> dict[str, Any]:
        """React to a message with ``emoji`` ("" takes the reaction back)."""
        return self.call("react", chat=chat, message_id=message_id, emoji=emoji, **_given(sender=sender))

    def edit(self, chat: str, message_id: str, text: str) -> dict[str, Any]:
        return self.call("edit", chat=chat, message_id=message_id, text=text)

    def revoke(self, chat: str, message_id: str, *, sender: str | None = None) -> dict[str, Any]:
        """Delete a message for everyone."""
        return self.call("revoke", chat=chat, message_id=message_id, **_given(sender=sender))

    def download(self, message_id: str | None = None, *, media: dict[str, Any] | None = None) -> dict[str, Any]:
        """The media of a received message, saved in the bot's directory: ``{"path", "size", ...}``."""
        return self.call("download", **_given(message_id=message_id, media=media))

    def subscribe_presence(self, jid: str) -> dict[str, Any]:
        return self.call("subscribe_presence", jid=jid)

    def check_numbers(self, numbers: list[str]) -> dict[str, Any]:
        """Which numbers are on WhatsApp: ``{"results": [{"query", "jid", "on_whatsapp"}]}``."""
        return self.call("check_numbers", numbers=list(numbers))

    def user_info(self, jids: list[str]) -> dict[str, Any]:
        return self.call("user_info", jids=list(jids))

    def group_info(self, group: str) -> dict[str, Any]:
        """A group's subject, settings and participants."""
        return self.call("group_info", group=group)

    def reject_call(self, call_id: str, caller: str) -> dict[str, Any]:
        return self.call("reject_call", call_id=call_id, caller=caller)

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
