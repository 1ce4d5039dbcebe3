"""``ping``: is a supervisor there? Replies with its pid, server name and uptime."""

from __future__ import annotations

import time
from typing import Any

from protocol.control import Request, ok


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    answer(ok(request.id, {"pid": supervisor.pid, "server": supervisor.server,
                           "uptime": round(time.time() - supervisor.started_at, 3)}))
