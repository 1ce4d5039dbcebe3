"""A bot's history, logout and text sends."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from .common import ERRORS, BotId, Caller, bot_call, control, gateway_of

router = APIRouter(prefix="/v1/bots", tags=["bots"], responses=ERRORS)


@router.get("/{bot}/history", summary="The bot's event history, oldest first (pid and seq name each event)")
async def history(request: Request, bot: BotId, caller: Caller,
                  limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None) -> dict[str, Any]:
    caller.check_read(bot)
    args: dict[str, Any] = {"bot": bot}
    if limit is not None:
        args["limit"] = limit
    return await control(gateway_of(request), "history", args)


class SendText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=256, description="a JID: 15551234567@s.whatsapp.net or a group")
    text: str = Field(min_length=1, max_length=65536)
    quote: str | None = Field(default=None, max_length=256, description="a received message id to reply to")
    mentions: list[str] | None = Field(default=None, max_length=1024)
    timeout: float | None = Field(default=None, gt=0, le=3600, description="seconds the worker may take")


@router.post("/{bot}/send", summary="Send a text message; the reply carries the send's id")
async def send(request: Request, bot: BotId, body: SendText, caller: Caller) -> dict[str, Any]:
    caller.check_write(bot)
    args = body.model_dump(exclude_none=True, exclude={"timeout"})
    return await bot_call(gateway_of(request), bot, "send", args, body.timeout)


@router.post("/{bot}/logout", summary="Log the bot out of WhatsApp (its session is deleted)")
async def logout(request: Request, bot: BotId, caller: Caller) -> dict[str, Any]:
    caller.check_write(bot)
    return await bot_call(gateway_of(request), bot, "logout")
