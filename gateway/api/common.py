"""What the routers share: the gateway, the caller, and control calls with API errors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import BaseModel, Field

from protocol.client import ControlError

from ..auth import Principal, require_key
from ..errors import from_control
from ..runtime import Gateway

Caller = Annotated[Principal, Depends(require_key)]
BotId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a bot id")]



class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: the control socket's codes plus unauthorized, forbidden, "
                                  "too-large, not-found, no-supervisor")
    message: str
    field: str | None = Field(default=None, description="the request field at fault, when one is")


class ErrorBody(BaseModel):
    error: ErrorDetail


#: the standard error responses, for the OpenAPI document
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "model": ErrorBody} for code, text in (
        (400, "bad request (the field is named)"), (401, "no valid API key"), (403, "outside the key's scope"),
        (404, "no such bot or resource"), (409, "the bot is not running"), (413, "request body too large"),
        (502, "the worker refused"), (503, "no supervisor answers"), (504, "the worker did not answer in time"))}


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


async def control(gateway: Gateway, command: str, args: dict[str, Any] | None = None) -> Any:
    try:
        return await gateway.bridge.call(command, args)
    except ControlError as exc:
        raise from_control(exc) from None


async def control_for(gateway: Gateway, bot: str, command: str, args: dict[str, Any] | None = None) -> Any:
    """``command`` on the supervisor that runs ``bot`` (in a [cluster], its shard's)."""
    try:
        return await gateway.bridge.call_for(bot, command, args)
    except ControlError as exc:
        raise from_control(exc) from None


async def bot_call(gateway: Gateway, bot: str, command: str, args: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
    try:
        return await gateway.bridge.bot_call(bot, command, args, timeout)
    except ControlError as exc:
        raise from_control(exc) from None
