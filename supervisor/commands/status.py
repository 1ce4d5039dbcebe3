"""``status [bots]``: every (or the named) container's status, as plain data.

Request args: ``{"bots": ["b1", ...]}`` (optional). Result: ``{"server", "pid", "bots": [status...],
"stats": {...}}``; an unknown bot id is an error naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from protocol.control import Request, error, ok

from ..stats import snapshot


_FIELDS: tuple[str, ...] = ()


def _fields() -> tuple[str, ...]:
    global _FIELDS
    from supervisor.container import ContainerStatus

    _FIELDS = tuple(f.name for f in dataclasses.fields(ContainerStatus))
    return _FIELDS


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    wanted = request.args.get("bots") or []
    if not isinstance(wanted, list) or not all(isinstance(b, str) for b in wanted):
        answer(error(request.id, "argument 'bots' must be a list of bot ids"))
        return
    unknown = [b for b in wanted if supervisor.manager.find(b) is None]
    if unknown:
        answer(error(request.id, f"no such bot: {', '.join(unknown)}"))
        return
    containers = [supervisor.manager.get_bot_container(b) for b in wanted] if wanted else list(supervisor.manager)
    statuses = []
    names = _FIELDS or _fields()
    for container in containers:
        status = container.get_status()
        # a flat dataclass: a shallow dict is what dataclasses.asdict returns, at a tenth of
        # its cost (it deep-copies every field), which counts at 200 bots on a busy supervisor
        plain = {name: getattr(status, name) for name in names}
        plain["bot_id"] = container.bot.id
        cluster = getattr(supervisor, "cluster", None)
        if cluster is not None:  # its shard, its lease token and the seconds left on it
            plain.update(cluster.lease_info(container.bot.id))
        statuses.append(plain)
    answer(ok(request.id, {"server": supervisor.server, "pid": supervisor.pid, "instance": supervisor.instance,
                           "bots": statuses,
                           "stats": snapshot(supervisor.stats)}))
