"""``ping``: is a supervisor there? Replies with its pid, server name and uptime."""

from __future__ import annotations

import time
from typing import Any

from protocol.control import Request, ok


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    result = {"pid": supervisor.pid, "server": supervisor.server,
              "uptime": round(time.time() - supervisor.started_at, 3), "ready": getattr(supervisor, "_ready", True)}
    cluster = getattr(supervisor, "cluster", None)
    if cluster is not None:  # `botvisor health --ready`: a shard without its database runs nothing
        result["cluster"] = {"shard": cluster.shard, "shards": cluster.settings.shards,
                             "database": cluster.keeper.connected, "leases": len(cluster.held)}
    answer(ok(request.id, result))
