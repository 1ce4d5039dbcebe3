"""``presence``: set the bot's presence.

Args: ``{"bot": id, "presence": "available"|"unavailable"|"composing"|"paused"|"recording",
"chat"?: JID or number (typing in that chat), "timeout"?: seconds}``. Result: the worker's
answer, ``{"presence": ...[, "chat": ...]}``.
"""

from __future__ import annotations

from typing import Any

from protocol.codes import BAD_REQUEST, failure
from protocol.control import Request

from .forward import forward, text_argument


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    presence = text_argument(request, "presence")
    if presence is None:
        answer(failure(request.id, BAD_REQUEST, "argument 'presence' must be a non-empty string"))
        return
    args: dict[str, Any] = {"presence": presence}
    if "chat" in request.args:
        chat = text_argument(request, "chat")
        if chat is None:
            answer(failure(request.id, BAD_REQUEST, "argument 'chat' must be a non-empty string"))
            return
        args["chat"] = chat
    forward(supervisor, request, answer, "presence", args)
