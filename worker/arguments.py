"""Checks of an operation's arguments, shared by every operation and by ``simulate``.

Each returns the value (made a full JID where it names someone) or raises CommandError naming
the argument and what it must be: the operator or the app reads that message, so it is written
once, here. A leaf: it imports nothing of the worker but its errors.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import CommandError

_PHONE_NOISE = re.compile(r"[\s+().-]")


def to_jid(value: str, key: str = "to") -> str:
    """A full JID (``...@s.whatsapp.net``, ``...@g.us``) as given, or a phone number made one."""
    if "@" in value:
        user, _, server = value.rpartition("@")
        if user and server:
            return value
    else:
        digits = _PHONE_NOISE.sub("", value)
        if digits.isdigit() and 6 <= len(digits) <= 20:
            return f"{digits}@s.whatsapp.net"
    raise CommandError(f"argument {key!r} must be a phone number with country code or a full JID, got {value!r}")


def text_arg(args: dict[str, Any], key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str) or not value:
        raise CommandError(f"argument {key!r} must be a non-empty string")
    return value


def optional_text(args: dict[str, Any], key: str, *, empty: bool = False) -> str | None:
    """None when not given; ``empty``: '' is a value too (a simulated group description cleared)."""
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CommandError(f"argument {key!r} must be a {'string' if empty else 'non-empty string'} when given, "
                           f"got {type(value).__name__}")
    if not value and not empty:
        raise CommandError(f"argument {key!r} must be a non-empty string when given")
    return value


def jid_arg(args: dict[str, Any], key: str) -> str:
    return to_jid(text_arg(args, key), key)


def optional_jid(args: dict[str, Any], key: str) -> str | None:
    value = optional_text(args, key)
    return to_jid(value, key) if value is not None else None


def optional_jids(args: dict[str, Any], key: str) -> list[str] | None:
    """A list of phone numbers or JIDs made full JIDs (mentions, participants); None when not given."""
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CommandError(f"argument {key!r} must be a list of phone numbers or JIDs")
    return [to_jid(v, key) for v in value]


def group_jid(value: str, key: str = "group") -> str:
    """A group's JID (``...@g.us``) as given, or its bare id made one."""
    jid = value if "@" in value else f"{value}@g.us"
    if not jid.endswith("@g.us") or not jid.split("@")[0]:
        raise CommandError(f"argument {key!r} must be a group JID (...@g.us), got {value!r}")
    return jid


def group_arg(args: dict[str, Any], key: str = "group") -> str:
    return group_jid(text_arg(args, key), key)
