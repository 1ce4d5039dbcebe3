"""``mark_read``: mark messages of a chat as read.

Args: ``{"bot": id, "chat": jid, "message_ids": [str, ...], "sender"?: jid, "timeout"?: seconds}``.
Result: the worker's answer, ``{"chat": jid, "read": [ids]}``.
"""

from __future__ import annotations

from typing import Any

from protocol.codes import BAD_REQUEST, failure
from protocol.control import Request

from .forward import forward, text_argument


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    chat = text_argument(request, "chat")
    ids = request.args.get("message_ids")
    sender = request.args.get("sender")
    if chat is None or not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        answer(failure(request.id, BAD_REQUEST, "give 'chat' (a jid) and 'message_ids' (a non-empty list of ids)"))
        return
    if sender is not None and not isinstance(sender, str):
        answer(failure(request.id, BAD_REQUEST, "argument 'sender' must be a jid"))
        return
    args: dict[str, Any] = {"chat": chat, "message_ids": ids}
    if sender is not None:
        args["sender"] = sender
    forward(supervisor, request, answer, "mark_read", args)
