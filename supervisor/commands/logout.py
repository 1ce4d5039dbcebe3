"""``logout``: log the bot out of WhatsApp (its session is deleted; it must be paired again).

Args: ``{"bot": id, "timeout"?: seconds}``. Result: the worker's answer, ``{"exiting": true,
"reason": ...}``; the worker then ends with exit code 78 and its container goes to ``failed``
(never restarted automatically: `botvisor start` it after pairing).
"""

from __future__ import annotations

from typing import Any

from protocol.control import Request

from .forward import forward


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    forward(supervisor, request, answer, "logout", {})
