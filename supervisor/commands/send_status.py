"""``send_status``: what became of one accepted send, looked up in the bot's outbox by its id.

Args: ``{"bot": id, "id": send id, "timeout"?: seconds}``. Result: the worker's answer,
``{"id", "state": queued|sending|sent|failed, "op", "message_id", "to", "attempts", "reason"?,
"created_at"}`` (docs/sends.md); an id the outbox does not hold is a ``worker-error``.
"""

from __future__ import annotations

from typing import Any

from protocol.codes import BAD_REQUEST, failure
from protocol.control import Request

from .forward import forward, text_argument


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    send_id = text_argument(request, "id")
    if send_id is None:
        answer(failure(request.id, BAD_REQUEST, "argument 'id' must be a send id"))
        return
    forward(supervisor, request, answer, "send_status", {"id": send_id})
