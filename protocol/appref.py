"""The ``app`` setting's two forms, checked where the configuration is loaded (no import here)."""

from __future__ import annotations


def is_path_form(target: str) -> bool:
    """``path/to/file.py`` (relative to the config file) rather than ``package.module``."""
    return target.endswith(".py") or "/" in target


def split_app(value: str) -> tuple[str, str]:
    """``"pkg.mod:bot"`` -> (``"pkg.mod"``, ``"bot"``); ValueError saying what is wrong."""
    target, sep, attribute = value.rpartition(":")
    if not sep or not target or not attribute.isidentifier():
        raise ValueError(f"{value!r} must be \"package.module:attribute\" or \"path/to/file.py:attribute\"")
    if not is_path_form(target) and not all(part.isidentifier() for part in target.split(".")):
        raise ValueError(f"{target!r} is neither a module name (a.b.c) nor a path to a .py file")
    return target, attribute


def check_app(value: str) -> str | None:
    try:
        split_app(value)
    except ValueError as exc:
        return str(exc)
    return None
