"""The context a handler gets: what happened, and how to act as the bot.

Every action is a worker operation called by name (worker/commands.py), so whatever the
backend can do, an app can do (``ctx.call("check_numbers", numbers=[...])``), and whatever it
cannot raises OperationError naming the operation. In an ``async def`` handler the action
methods return awaitables (already under way: an action not awaited still happens); in a plain
function they block and return the result.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from .state import Dialog, State, StateDB

if TYPE_CHECKING:
    import concurrent.futures
    import re


class Services:
    """What the runtime lends each context (one per running app)."""

    def __init__(self, *, bot_id: str, config: Mapping[str, Any], log: logging.Logger, db: StateDB | None,
                 call: Callable[[str, dict[str, Any]], concurrent.futures.Future[Any]],
                 call_async: Callable[[str, dict[str, Any]], asyncio.Future[Any]],
                 loop: asyncio.AbstractEventLoop, in_loop: Callable[[], bool], clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]], op_timeout: float) -> None:
        self.bot_id, self.config, self.log, self.db = bot_id, config, log, db
        self.call, self.call_async, self.loop, self.in_loop = call, call_async, loop, in_loop
        self.clock, self.sleep = clock, sleep
        self.op_timeout = op_timeout


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: ``/order 2 pizzas`` -> name ``order``, args ``("2", "pizzas")``, rest ``"2 pizzas"``."""

    name: str
    prefix: str
    args: tuple[str, ...]
    rest: str


@dataclass(frozen=True, slots=True)
class HandlerError:
    """What ``on_error`` hooks see in ``ctx.error``: the failure of one handler."""

    type: str
    message: str
    handler: str
    chat: str | None
    traceback: str
    exception: BaseException | None = None
    #: ``handler-error`` (it raised) or ``handler-timeout`` (it ran past handler_timeout)
    code: str = "handler-error"


class Context:
    """``ctx``: one per handled message or event."""

    def __init__(self, services: Services, *, event_type: str, event: Any = None, message: Any = None) -> None:
        self._services = services
        #: the event's type (``message-upsert``, ``connection-update``, ...; ``start``/``stop`` for hooks)
        self.event_type = event_type
        #: the event (any type); for message handlers the same object as ``message``
        self.event = event if event is not None else message
        #: the message, for message and command handlers (None otherwise)
        self.message = message
        #: set by a matching ``filters.regex``
        self.match: re.Match[str] | None = None
        #: set for command handlers
        self.command: Command | None = None
        #: set for ``on_error`` hooks
        self.error: HandlerError | None = None
        self._continue = False
        chat, sender = self.chat, self.sender
        self.state = State(services.db, chat, sender) if services.db is not None else None
        self.dialog = Dialog(services.db, chat, sender)

    # -- what happened -----------------------------------------------------------------
    @property
    def bot_id(self) -> str:
        return self._services.bot_id

    @property
    def config(self) -> Mapping[str, Any]:
        """The bot's ``[bots.app_config]``: read-only plain data."""
        return self._services.config

    @property
    def log(self) -> logging.Logger:
        """The bot's logger (its lines carry the bot id; they go to the bot's log)."""
        return self._services.log

    @property
    def text(self) -> str | None:
        return getattr(self.event, "text", None)

    @property
    def chat(self) -> str | None:
        return getattr(self.event, "chat", None)

    @property
    def sender(self) -> str | None:
        return getattr(self.event, "sender", None)

    def now(self) -> float:
        """Unix seconds (the test kit's clock under botvisor.testing)."""
        return self._services.clock()

    def continue_handling(self) -> None:
        """After this handler, try the next matching one too (the default is: first match wins)."""
        self._continue = True

    # -- acting as the bot -------------------------------------------------------------
    def call(self, operation: str, **args: Any) -> Any:
        """Run any worker operation by name (``send``, ``presence``, ``mark_read``, ``send_media``, ...)."""
        return self._action(operation, args)

    def send(self, to: str, text: str, **extra: Any) -> Any:
        """Send ``text`` to a chat (a JID or a phone number with country code)."""
        return self._action("send", {"to": to, "text": text, **extra})

    def reply(self, text: str, *, quote: bool = True, **extra: Any) -> Any:
        """Answer in the message's chat, quoting it (when the backend can quote)."""
        message = self._need_message("reply")
        args: dict[str, Any] = {"to": message.chat, "text": text, **extra}
        if quote and "quote" not in args:  # quoted when the backend still knows the message
            args["quote"] = message.id
            args["quote_if_known"] = True
        return self._action("send", args)

    def react(self, emoji: str) -> Any:
        """React to the message with ``emoji`` (an empty string removes the reaction)."""
        message = self._need_message("react")
        return self._action("react", {"chat": message.chat, "message_id": message.id, "emoji": emoji,
                                       "sender": message.sender})

    def mark_read(self) -> Any:
        """Mark the message read (blue ticks)."""
        message = self._need_message("mark_read")
        args = {"chat": message.chat, "message_ids": [message.id]}
        if getattr(message, "is_group", False):
            args["sender"] = message.sender
        return self._action("mark_read", args)

    def typing(self, seconds: float = 1.0) -> Any:
        """Show "typing..." in the chat for ``seconds``, then stop."""
        chat = self.chat
        if not chat:
            raise ValueError("typing() needs a chat: this event has none")

        async def show() -> None:
            await self._op("presence", {"presence": "composing", "chat": chat})
            try:
                await self._services.sleep(seconds)
            finally:
                await self._op("presence", {"presence": "paused", "chat": chat})

        return self._run(show())

    # -- plumbing ----------------------------------------------------------------------
    def _need_message(self, what: str) -> Any:
        if self.message is None or not getattr(self.message, "id", None):
            raise ValueError(f"{what}() needs a message: this is a {self.event_type} handler")
        return self.message

    async def _op(self, name: str, args: dict[str, Any]) -> Any:
        return await self._services.call_async(name, args)

    def _action(self, name: str, args: dict[str, Any]) -> Any:
        """One operation: in an async handler the operation's future itself (under way already; no
        task around it), in a plain function its result."""
        if self._services.in_loop():
            return self._services.call_async(name, args)
        return self._run(self._op(name, args))

    def _run(self, coro: Any) -> Any:
        services = self._services
        if services.in_loop():  # an async handler: under way now, awaitable for the result
            return asyncio.ensure_future(coro)
        return asyncio.run_coroutine_threadsafe(coro, services.loop).result(services.op_timeout)

    def __repr__(self) -> str:
        return f"<Context {self.event_type} bot={self.bot_id} chat={self.chat}>"
