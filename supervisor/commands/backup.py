"""``backup``: ask the bot's worker to back up its credentials inside its own bot directory.

Args: ``{"bot": id, "timeout"?: seconds}``. Result: the worker's answer (the backup's file
name). A worker whose backend has no ``backup`` operation answers with an error.
"""

from __future__ import annotations

from typing import Any

from protocol.control import Request

from .forward import forward


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    forward(supervisor, request, answer, "backup", {})
