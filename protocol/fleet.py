"""The whole fleet across shards: every shard's status merged, each bot with its shard.

For `botvisor status/top --fleet` and for the gateway (which routes a bot's requests to
``control_endpoint(config, bot)``). Shards are asked at once, each bounded by ``timeout``; a shard
that does not answer is reported (``shards[k].error``) and its bots listed as ``unknown`` with
the shard the configuration gives them, never silently left out. Over tcp:// the CURVE client
keys of [security] are used for every shard (they share one server key pair: docs/cluster.md).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .cluster_config import shard_of
from .config import Config


def endpoints(config: Config, role: str) -> list[tuple[int | None, str]]:
    """(shard, endpoint) of every shard for ``role`` (control or tap); one host: [(None, its own)]."""
    if config.cluster is not None:
        peers = config.cluster.peers(role)
        if peers:
            return list(enumerate(peers))
    return [(None, config.endpoint(role))]


def control_endpoint(config: Config, bot_id: str) -> str:
    """Where to send a control request about ``bot_id``: the control endpoint of its shard."""
    return owner(config, bot_id)[1]


def owner(config: Config, bot_id: str) -> tuple[int | None, str]:
    """(shard, control endpoint) of the shard that runs ``bot_id`` (its pin, else the hashing);
    one host: (None, its own)."""
    if config.cluster is None or not config.cluster.peer_control:
        return None, config.endpoint("control")
    bot: Any = next((b for b in config.bots if b.id == bot_id), bot_id)
    k = shard_of(bot, config.cluster.shards)
    return k, config.cluster.peers("control")[k]


def _ask(config: Config, endpoint: str, timeout: float, command: str, args: dict[str, Any]) -> Any:
    from .client import ControlClient
    from .curve import client_keys

    with ControlClient(endpoint, timeout=timeout, curve=client_keys(config, endpoint)) as client:
        return client.call(command, args)


#: how fleet_status asks one shard: (endpoint, timeout, command, args) -> result
Ask = Callable[[str, float, str, dict[str, Any]], Any]


def fleet_status(config: Config, timeout: float = 2.0, ask: Ask | None = None) -> dict[str, Any]:
    """``{"server", "shards": [{shard, endpoint, reachable, pid | error}], "bots": [status + "shard"]}``.

    ``ask``: how to reach a shard (the gateway passes its pool of clients); default a new client.
    """
    targets = endpoints(config, "control")
    call = ask or (lambda ep, t, command, args: _ask(config, ep, t, command, args))
    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        futures = [pool.submit(call, ep, timeout, "status", {}) for _k, ep in targets]
        answers = []
        for (k, ep), future in zip(targets, futures):
            try:
                answers.append((k, ep, future.result(), None))
            except Exception as exc:  # NotRunning, AuthenticationFailed, ControlError: name the shard
                answers.append((k, ep, None, f"{exc.__class__.__name__}: {exc}"))
    shards, bots, seen = [], [], set()
    for k, ep, result, problem in answers:
        if result is None:
            shards.append({"shard": k, "endpoint": ep, "reachable": False, "error": problem})
            continue
        shards.append({"shard": k, "endpoint": ep, "reachable": True, "pid": result.get("pid")})
        for bot in result["bots"]:
            bot.setdefault("shard", k)
            seen.add(bot["bot_id"])
            bots.append(bot)
    if config.cluster is not None:
        down = {s["shard"] for s in shards if "error" in s}
        for bot in config.bots:
            k = shard_of(bot, config.cluster.shards)
            if bot.id not in seen and k in down:
                bots.append({"bot_id": bot.id, "shard": k, "container_state": "unknown", "bot_status": "unknown",
                             "reason": f"shard {k} does not answer", "is_healthy": False, "pid": None,
                             "uptime": None, "restarts": 0, "last_heartbeat": None, "connection_attempts": 0,
                             "events_total": 0, "events_lost": 0, "rss": 0, "cpu": 0.0})
    return {"server": config.supervisor.server_name, "shards": shards, "bots": bots}


class FleetClient:
    """ControlClient's ``call("status")`` over every shard (for `top --fleet`): the merged status,
    ``pid`` None; NotRunning when no shard answers."""

    def __init__(self, config: Config, timeout: float = 2.0) -> None:
        self.config, self.timeout = config, timeout

    def call(self, command: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        from .client import NotRunning

        if command != "status":
            raise ValueError("a fleet client answers status only; send other commands to the bot's shard")
        result = fleet_status(self.config, self.timeout if timeout is None else timeout)
        if all("error" in s for s in result["shards"]):
            raise NotRunning("no shard answers: " + "; ".join(s["error"] for s in result["shards"]))
        down = [str(s["shard"]) for s in result["shards"] if "error" in s]
        return {**result, "pid": None, "problem": f"shard(s) {', '.join(down)} not answering" if down else None}

    def close(self) -> None:
        pass
