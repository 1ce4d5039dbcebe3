"""Composable filters: which messages (or events) a handler wants.

A filter is a predicate on the handler's context. Combine them with ``&`` (both), ``|`` (either)
and ``~`` (not). A regex filter that matches leaves its ``re.Match`` in ``ctx.match``, so the
handler reads the groups (``ctx.match["amount"]``). Filters are cheap and pure: they read the
message and the conversation's dialog state, never the network.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from .context import Context

__all__ = [
    "Filter", "everything", "text", "equals", "contains", "startswith", "regex", "private", "group", "from_me",
    "chat", "sender", "message_type", "media", "state", "in_dialog",
]


class Filter:
    """A named predicate on a context; ``&``, ``|`` and ``~`` build new ones."""

    __slots__ = ("check", "name")

    def __init__(self, check: Callable[[Context], bool], name: str) -> None:
        self.check = check
        self.name = name

    def __call__(self, ctx: Context) -> bool:
        return bool(self.check(ctx))

    def __and__(self, other: Filter) -> Filter:
        a, b = self, _as_filter(other)
        return Filter(lambda ctx: a.check(ctx) and b.check(ctx), f"({a.name} & {b.name})")

    def __or__(self, other: Filter) -> Filter:
        a, b = self, _as_filter(other)
        return Filter(lambda ctx: a.check(ctx) or b.check(ctx), f"({a.name} | {b.name})")

    def __invert__(self) -> Filter:
        a = self
        return Filter(lambda ctx: not a.check(ctx), f"~{a.name}")

    def __repr__(self) -> str:
        return f"<filter {self.name}>"


def _as_filter(value: Any) -> Filter:
    if isinstance(value, Filter):
        return value
    if callable(value):  # a plain function ctx -> bool is a filter too
        return Filter(value, getattr(value, "__name__", "function"))
    raise TypeError(f"a filter must be a botvisor.filters.Filter or a function of ctx, got {type(value).__name__}")


def _message(ctx: Context) -> Any:
    return ctx.message if ctx.message is not None else ctx.event


def _text_of(ctx: Context) -> str | None:
    message = _message(ctx)
    return getattr(message, "text", None)


#: every message (the default of ``on_message``)
everything = Filter(lambda ctx: True, "everything")
#: messages that carry text (a conversation, an extended text, a caption)
text = Filter(lambda ctx: bool(_text_of(ctx)), "text")
#: one-to-one chats (not groups)
private = Filter(lambda ctx: not getattr(_message(ctx), "is_group", False), "private")
#: group chats
group = Filter(lambda ctx: bool(getattr(_message(ctx), "is_group", False)), "group")
#: messages sent by this bot's own account (see ``Bot.on_message(own=True)``)
from_me = Filter(lambda ctx: bool(getattr(_message(ctx), "from_me", False)), "from_me")
#: messages with media (image, video, audio, document, sticker)
media = Filter(lambda ctx: bool(getattr(_message(ctx), "media", None))
               or getattr(_message(ctx), "message_type", "text") in MEDIA_TYPES, "media")
MEDIA_TYPES = frozenset({"image", "video", "audio", "voice", "ptt", "document", "sticker"})


def _fold(value: str, ignore_case: bool) -> str:
    return value.casefold() if ignore_case else value


def equals(*values: str, ignore_case: bool = True, strip: bool = True) -> Filter:
    """The whole text is one of ``values`` (case-insensitive and stripped by default)."""
    if not values:
        raise ValueError("equals() needs at least one value")
    wanted = {_fold(v.strip() if strip else v, ignore_case) for v in values}

    def check(ctx: Context) -> bool:
        body = _text_of(ctx)
        return body is not None and _fold(body.strip() if strip else body, ignore_case) in wanted

    return Filter(check, f"equals{tuple(values)!r}")


def contains(*values: str, ignore_case: bool = True) -> Filter:
    """The text contains any of ``values``."""
    if not values:
        raise ValueError("contains() needs at least one value")
    needles = [_fold(v, ignore_case) for v in values]

    def check(ctx: Context) -> bool:
        body = _text_of(ctx)
        return body is not None and any(n in _fold(body, ignore_case) for n in needles)

    return Filter(check, f"contains{tuple(values)!r}")


def startswith(*values: str, ignore_case: bool = True) -> Filter:
    """The text starts with any of ``values``."""
    prefixes = tuple(_fold(v, ignore_case) for v in values)

    def check(ctx: Context) -> bool:
        body = _text_of(ctx)
        return body is not None and _fold(body, ignore_case).startswith(prefixes)

    return Filter(check, f"startswith{tuple(values)!r}")


def regex(pattern: str | re.Pattern[str], flags: int = 0) -> Filter:
    """``re.search`` on the text; on a match the handler finds it in ``ctx.match``."""
    compiled = re.compile(pattern, flags) if isinstance(pattern, str) else pattern

    def check(ctx: Context) -> bool:
        body = _text_of(ctx)
        found = compiled.search(body) if body is not None else None
        if found is not None:
            ctx.match = found
        return found is not None

    return Filter(check, f"regex({compiled.pattern!r})")


def _jids(values: Iterable[str]) -> frozenset[str]:
    out = set()
    for value in values:
        value = value.strip()
        out.add(value if "@" in value else f"{value.lstrip('+')}@s.whatsapp.net")  # a phone number
    return frozenset(out)


def chat(*jids: str) -> Filter:
    """The chat is one of ``jids`` (full JIDs, or phone numbers with country code)."""
    wanted = _jids(jids)
    return Filter(lambda ctx: getattr(_message(ctx), "chat", None) in wanted, f"chat{tuple(jids)!r}")


def sender(*jids: str) -> Filter:
    """The sender is one of ``jids`` (full JIDs, or phone numbers with country code)."""
    wanted = _jids(jids)
    return Filter(lambda ctx: getattr(_message(ctx), "sender", None) in wanted, f"sender{tuple(jids)!r}")


def message_type(*types: str) -> Filter:
    """whatsmeow's message type is one of ``types`` (``text``, ``image``, ``sticker``, ...)."""
    wanted = frozenset(types)
    return Filter(lambda ctx: getattr(_message(ctx), "message_type", None) in wanted, f"message_type{tuple(types)!r}")


def state(*names: str | None) -> Filter:
    """The sender's dialog in this chat is at one of ``names`` (``None``: no dialog in progress)."""
    wanted = frozenset(names)
    return Filter(lambda ctx: ctx.dialog.state in wanted, f"state{tuple(names)!r}")


#: a dialog is in progress for this sender in this chat
in_dialog = Filter(lambda ctx: ctx.dialog.state is not None, "in_dialog")
