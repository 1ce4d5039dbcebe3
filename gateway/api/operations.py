"""Every other operation the control socket offers a bot, forwarded as it is.

``POST /v1/bots/{bot}/operations/{name}`` with the operation's arguments as a JSON object
(send_media, react, edit, revoke, presence, mark_read, check_numbers, ...): a new worker
operation is reachable here as soon as the control socket has it, with no gateway change.
The control socket validates the arguments and answers ``unknown-command`` (404) for a name
it does not know. Supervisor-level commands have their own routes and are refused here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request

from protocol import codes

from ..errors import ApiError
from .common import ERRORS, BotId, Caller, bot_call, gateway_of

router = APIRouter(prefix="/v1/bots", tags=["operations"], responses=ERRORS)

#: control commands that are not a bot's operations (they have routes of their own)
NOT_OPERATIONS = frozenset({"status", "start", "stop", "restart", "reload", "history", "ping"})
OpName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="the operation, e.g. send_media")]


@router.post("/{bot}/operations/{name}", summary="Run any operation of the bot's worker (send_media, react, ...)")
async def operation(request: Request, bot: BotId, name: OpName, caller: Caller,
                    args: Annotated[dict[str, Any], Body(default_factory=dict,
                                                         examples=[{"chat": "1555@s.whatsapp.net",
                                                                    "message_id": "3EB0...", "emoji": "👍"}])],
                    ) -> Any:
    caller.check_write(bot)
    if name in NOT_OPERATIONS:
        raise ApiError(codes.UNKNOWN_COMMAND, f"{name!r} is not a bot operation (see /v1/status, /v1/bots/{{bot}})",
                       "name")
    if "bot" in args:
        raise ApiError(codes.BAD_REQUEST, "the bot is named by the path, not by the body", "bot")
    timeout = args.pop("timeout", None)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout <= 3600):
        raise ApiError(codes.BAD_REQUEST, "timeout must be a number of seconds in (0, 3600]", "timeout")
    return await bot_call(gateway_of(request), bot, name, args, timeout)
