"""Fleet and bot status, start/stop/restart (control ``status``, ``start``, ``stop``, ``restart``).

In a [cluster], ``/v1/status`` is every shard's status merged (each bot with its ``shard``; a
``shards`` list with ``reachable`` per shard; the bots of a shard that does not answer listed
with state ``unknown``), and a bot's routes go to the shard that runs it (gateway/bridge.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from protocol import codes

from ..errors import ApiError
from .common import ERRORS, BotId, Caller, control, control_for, gateway_of

router = APIRouter(prefix="/v1", tags=["fleet"], responses=ERRORS)


@router.get("/status", summary="Every bot the key may see, with the supervisor's stats")
async def fleet_status(request: Request, caller: Caller) -> dict[str, Any]:
    status = await control(gateway_of(request), "status")
    status["bots"] = [b for b in status.get("bots", []) if caller.sees(b.get("bot_id", ""))]
    counts: dict[str, int] = {}
    for bot in status["bots"]:
        counts[bot.get("container_state", "?")] = counts.get(bot.get("container_state", "?"), 0) + 1
    status["counts"] = counts
    return status


async def one_status(request: Request, bot: str) -> dict[str, Any]:
    status = await control_for(gateway_of(request), bot, "status")
    for entry in status.get("bots", []):
        if entry.get("bot_id") == bot:
            return entry
    raise ApiError(codes.UNKNOWN_BOT, f"no bot {bot!r} is configured")


@router.get("/bots/{bot}", summary="One bot's status")
async def bot_status(request: Request, bot: BotId, caller: Caller) -> dict[str, Any]:
    caller.check_read(bot)
    return await one_status(request, bot)


def _lifecycle(action: str) -> Any:
    async def act(request: Request, bot: BotId, caller: Caller) -> dict[str, Any]:
        caller.check_write(bot)
        gateway = gateway_of(request)
        await one_status(request, bot)  # 404 for an unknown bot, as for the other bot routes
        result = await control(gateway, action, {"bots": [bot]})
        return result.get(bot, result)

    act.__name__ = f"{action}_bot"
    return act


for _action in ("start", "stop", "restart"):
    router.add_api_route(f"/bots/{{bot}}/{_action}", _lifecycle(_action), methods=["POST"],
                         summary=f"{_action.capitalize()} the bot's worker (its state before and after)")
