"""The WhatsApp operations beyond plain text (issue 13) and offline injection, by name.

Each validates its arguments here, naming the bad one, and leaves the WhatsApp work to the
backend's method of the same name. ``commands.OPERATIONS`` includes this table.
"""

from __future__ import annotations

from typing import Any, Callable

from .backends.base import Backend
from .errors import CommandError


def simulate(backend: Backend, args: dict[str, Any]) -> Any:
    if not isinstance(args, dict):
        raise CommandError("simulate takes a map of arguments")
    return backend.simulate(dict(args))


OPERATIONS: dict[str, Callable[[Backend, dict[str, Any]], Any]] = {
    "simulate": simulate,
}
