"""``history``: a container's event history (the original's getEventHistory), oldest first.

Args: ``{"bot": id, "limit"?: n}`` (the last n events; default all kept, at most
``event_history`` per bot). Result: ``{"bot": id, "events": [{"type", "data", "timestamp"}...]}``,
where ``type`` is an event type and ``timestamp`` is unix seconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from protocol.codes import BAD_REQUEST, UNKNOWN_BOT, failure
from protocol.control import Request, ok

from .forward import bot_argument


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    bot_id = bot_argument(request)
    limit = request.args.get("limit")
    if bot_id is None:
        answer(failure(request.id, BAD_REQUEST, "argument 'bot' must be a bot id"))
        return
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        answer(failure(request.id, BAD_REQUEST, "argument 'limit' must be a positive integer"))
        return
    container = supervisor.manager.find(bot_id)
    if container is None:
        answer(failure(request.id, UNKNOWN_BOT, f"no bot {bot_id!r} is configured"))
        return
    events = [dataclasses.asdict(e) for e in container.get_event_history(limit)]
    answer(ok(request.id, {"bot": bot_id, "events": events}))
