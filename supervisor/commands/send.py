"""``send``: send a text message as the bot.

Args: ``{"bot": id, "to": jid, "text": str, "quote"?: message id, "mentions"?: [jid],
"timeout"?: seconds}``. Result: the worker's answer, ``{"id": send id, "state": "sent" |
"queued", "message_id": WhatsApp id, "to": jid, ...}`` (docs/control.md).
"""

from __future__ import annotations

from typing import Any

from protocol.codes import BAD_REQUEST, failure
from protocol.control import Request

from .forward import forward, text_argument


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    to, text = text_argument(request, "to"), text_argument(request, "text")
    if to is None or text is None:
        answer(failure(request.id, BAD_REQUEST, "arguments 'to' and 'text' must be non-empty strings"))
        return
    args = {"to": to, "text": text}
    args.update({key: request.args[key] for key in ("quote", "mentions") if request.args.get(key) is not None})
    forward(supervisor, request, answer, "send", args)
