"""``Bot``: the registry of an app's handlers and the rule that picks one per message.

Message handlers (``on_message`` and ``command``) form one list in the order they were
registered. For each incoming message the list is tried top to bottom and the first handler
whose filter matches runs; the rest do not, unless that handler called
``ctx.continue_handling()``, and then the next matching one runs as well. Event handlers
(``on("connection-update")``, ...) work the same way per event type. Messages the bot's own
account sent reach only handlers registered with ``own=True``, so a bot never answers itself.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from protocol.events import EventType

from . import filters as F
from .context import Command, Context
from .errors import AppDefinitionError

Handler_ = Callable[[Context], Any]

#: message kinds (the message model's ``kind``); a message without one is a plain ``message``
MESSAGE_KINDS = ("message", "reaction", "edit", "revoke")


@dataclass(frozen=True)
class Handler:
    fn: Handler_
    #: ``module.function``, as error events name it
    name: str
    filter: F.Filter
    is_async: bool
    #: ``message``, ``command``, ``event``, ``start``, ``stop``, ``error``
    role: str
    own: bool = False
    kinds: frozenset[str] = frozenset({"message"})
    command_names: frozenset[str] = frozenset()
    prefixes: str = ""
    event_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def parse_command(self, text: str | None) -> Command | None:
        if not text:
            return None
        body = text.strip()
        if len(body) < 2 or body[0] not in self.prefixes:
            return None
        head, _, rest = body[1:].partition(" ")
        if head.casefold() not in self.command_names:
            return None
        rest = rest.strip()
        return Command(name=head.casefold(), prefix=body[0], args=tuple(rest.split()), rest=rest)


def _handler_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_signature(fn: Any, what: str) -> None:
    if not callable(fn):
        raise AppDefinitionError(f"{what} must decorate a function, got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
        sig.bind(object())
    except TypeError:
        raise AppDefinitionError(f"{_handler_name(fn)}: a handler takes one argument, the context (ctx)") from None
    except ValueError:
        pass  # builtins without a signature: let them be


def _filter_of(value: Any) -> F.Filter:
    if value is None:
        return F.everything
    return F._as_filter(value)


class Bot:
    """A bot app: decorate handlers on it, name it in the configuration (``app = "mybot:bot"``)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.message_handlers: list[Handler] = []
        self.event_handlers: dict[str, list[Handler]] = {}
        self.start_hooks: list[Handler] = []
        self.stop_hooks: list[Handler] = []
        self.error_hooks: list[Handler] = []

    def _make(self, fn: Handler_, role: str, what: str, flt: Any = None, **kw: Any) -> Handler:
        _check_signature(fn, what)
        return Handler(fn=fn, name=_handler_name(fn), filter=_filter_of(flt),
                       is_async=asyncio.iscoroutinefunction(fn), role=role, **kw)

    # -- decorators --------------------------------------------------------------------
    def on_message(self, filter: Any = None, *, own: bool = False,
                   kind: str | tuple[str, ...] = "message") -> Callable[[Handler_], Handler_]:
        """Handle incoming messages that pass ``filter`` (default: every message).

        ``kind``: which message kinds reach it (``message``, ``reaction``, ``edit``, ``revoke``,
        a tuple of them, or ``"*"``). ``own=True``: also messages this account sent itself.
        """
        if callable(filter) and not isinstance(filter, F.Filter):  # bare @bot.on_message
            fn, filter = filter, None
            return self.on_message(None)(fn)  # type: ignore[return-value]
        kinds = frozenset(MESSAGE_KINDS) if kind == "*" else frozenset((kind,) if isinstance(kind, str) else kind)
        unknown = kinds - set(MESSAGE_KINDS)
        if unknown:
            raise AppDefinitionError(f"unknown message kind {sorted(unknown)}; known: {', '.join(MESSAGE_KINDS)}")

        def register(fn: Handler_) -> Handler_:
            self.message_handlers.append(self._make(fn, "message", "on_message", filter, own=own, kinds=kinds))
            return fn

        return register

    def command(self, *names: str, prefix: str = "/!", filter: Any = None) -> Callable[[Handler_], Handler_]:
        """Handle ``/name args...`` (any one character of ``prefix`` starts a command); the parsed
        command is ``ctx.command`` (``name``, ``args``, ``rest``). Names are case-insensitive."""
        if not names or not all(isinstance(n, str) and n and " " not in n for n in names):
            raise AppDefinitionError("command() needs one or more names without spaces, e.g. command('order')")
        if not prefix:
            raise AppDefinitionError("command() needs a prefix of one or more characters, e.g. '/!'")
        folded = frozenset(n.casefold().lstrip(prefix) or n.casefold() for n in names)

        def register(fn: Handler_) -> Handler_:
            self.message_handlers.append(self._make(fn, "command", "command", filter, command_names=folded,
                                                    prefixes=prefix))
            return fn

        return register

    def on(self, event_type: str, filter: Any = None) -> Callable[[Handler_], Handler_]:
        """Handle one event type (``connection-update``, ``presence-update``, ``creds-update``, ``error``,
        ``message-upsert`` raw, and every other type the protocol has); ``ctx.event`` is the event."""
        known = {t.value for t in EventType}
        if event_type not in known:
            raise AppDefinitionError(f"unknown event type {event_type!r}; known: {', '.join(sorted(known))}")

        def register(fn: Handler_) -> Handler_:
            self.event_handlers.setdefault(event_type, []).append(
                self._make(fn, "event", f"on({event_type!r})", filter, event_type=event_type))
            return fn

        return register

    def on_start(self, fn: Handler_) -> Handler_:
        """Run once when the app starts, before any message; a failure ends the bot as ``failed``."""
        self.start_hooks.append(self._make(fn, "start", "on_start"))
        return fn

    def on_stop(self, fn: Handler_) -> Handler_:
        """Run once when the worker stops on request (not after a crash or SIGKILL)."""
        self.stop_hooks.append(self._make(fn, "stop", "on_stop"))
        return fn

    def on_error(self, fn: Handler_) -> Handler_:
        """Run when a handler raises or times out; ``ctx.error`` says which, where and why."""
        self.error_hooks.append(self._make(fn, "error", "on_error"))
        return fn

    # -- choosing handlers -------------------------------------------------------------
    def candidates(self, event_type: str, event: Any) -> list[Handler]:
        """The handlers that may see this event, in order (filters are tried at run time)."""
        if event_type == EventType.MESSAGE_UPSERT:
            kind = getattr(event, "kind", None) or "message"
            own = bool(getattr(event, "from_me", False))
            return [h for h in self.message_handlers if kind in h.kinds and (h.own or not own)]
        return list(self.event_handlers.get(event_type, ()))


def matching(handlers: list[Handler], ctx: Context) -> Iterator[Handler]:
    """Handlers whose filter (and command) match, in order; the caller stops unless continued."""
    for handler in handlers:
        ctx.match = None
        ctx.command = None
        if handler.role == "command":
            parsed = handler.parse_command(ctx.text)
            if parsed is None:
                continue
            ctx.command = parsed
        if handler.filter.check(ctx):
            yield handler


def is_app(value: Any) -> bool:
    return isinstance(value, Bot)
