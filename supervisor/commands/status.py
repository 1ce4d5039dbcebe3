"""``status [bots]``: every (or the named) container's status, as plain data.

Request args: ``{"bots": ["b1", ...]}`` (optional). Result: ``{"server", "pid", "bots": [status...],
"stats": {...}}``; an unknown bot id is an error naming it.
"""

from __future__ import annotations

from typing import Any

from protocol.control import Request, error, ok

from ..intake import STATUS_SAMPLE_AGE_S, STATUS_STALE_S
from ..stats import snapshot

#: workers sampled per turn after a status, and the turns' spacing (events relay in between)
REFRESH_CHUNK = 25
REFRESH_GAP_S = 0.005


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
    cluster = getattr(supervisor, "cluster", None)
    for container in containers:
        plain = container.status_fields(STATUS_STALE_S)
        plain["bot_id"] = container.bot.id
        if cluster is not None:  # its shard, its lease token and the seconds left on it
            plain.update(cluster.lease_info(container.bot.id))
        statuses.append(plain)
    answer(ok(request.id, {"server": supervisor.server, "pid": supervisor.pid, "instance": supervisor.instance,
                           "bots": statuses,
                           "stats": snapshot(supervisor.stats)}))
    refresh(supervisor, containers)


def refresh(supervisor: Any, containers: list[Any]) -> None:
    """After answering: sample again, REFRESH_CHUNK workers a turn, those whose sample is older
    than STATUS_SAMPLE_AGE_S, so the next status is fresh and no turn of the loop reads /proc
    for the whole fleet at once."""
    def step(left: list[Any]) -> None:
        read = 0
        while left and read < REFRESH_CHUNK:
            read += left.pop().sample_older_than(STATUS_SAMPLE_AGE_S)
        if left:
            supervisor.call_later(REFRESH_GAP_S, lambda: step(left))

    supervisor.call_later(REFRESH_GAP_S, lambda: step(list(containers)))
