"""The bot's current pairing QR (PNG or text) and phone pair code.

What the bot's worker is showing in its current life: its latest QR and its pair code (one
per life, after the first QR), as the hub keeps them from the tap (gateway/hub.py
``pairing_step``; cleared when the connection opens or closes, or the worker goes), else
replayed from the bot's history. 404 with ``not-found`` when the bot is not pairing.
"""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from ..envelope import from_history
from ..errors import NOT_FOUND, ApiError
from ..hub import pairing_step
from .common import ERRORS, BotId, Caller, control, gateway_of

router = APIRouter(prefix="/v1/bots", tags=["pairing"], responses=ERRORS)


async def current_pairing(request: Request, bot: str, need: str = "pair_code") -> dict[str, Any]:
    """The bot's pairing data (qr, pair_code) in its worker's current life, or {}.

    The hub's memory when it has ``need``; else a replay of the bot's history through the same
    rule: a gateway (re)started after the first QR missed the life's one pair code.
    """
    gateway = gateway_of(request)
    known = gateway.hub.pairing.get(bot)
    if known is not None and known["data"].get(need):
        return known["data"]
    replayed = None
    for entry in (await control(gateway, "history", {"bot": bot})).get("events", []):
        replayed = pairing_step(replayed, from_history(gateway.server, bot, entry))
    if replayed is not None and replayed["data"].get(need) and (known is None or replayed["pid"] == known["pid"]):
        return replayed["data"]
    return known["data"] if known is not None else {}


async def _qr(request: Request, bot: str, caller: Any) -> str:
    caller.check_read(bot)
    qr = (await current_pairing(request, bot, "qr")).get("qr")
    if not qr:
        raise ApiError(NOT_FOUND, f"bot {bot!r} is not showing a QR code (paired, or not started)")
    return qr


@router.get("/{bot}/qr", summary="The current pairing QR code as a PNG image",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def qr_png(request: Request, bot: BotId, caller: Caller, scale: int = 8) -> Response:
    import segno

    data = await _qr(request, bot, caller)
    out = io.BytesIO()
    segno.make_qr(data).save(out, kind="png", scale=max(1, min(scale, 40)), border=4)
    return Response(out.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/{bot}/qr.txt", summary="The current pairing QR code's text (what the QR encodes)",
            response_class=PlainTextResponse)
async def qr_text(request: Request, bot: BotId, caller: Caller) -> PlainTextResponse:
    return PlainTextResponse(await _qr(request, bot, caller), headers={"Cache-Control": "no-store"})


@router.get("/{bot}/pair-code", summary="The phone pairing code, when pairing by phone number")
async def pair_code(request: Request, bot: BotId, caller: Caller) -> dict[str, Any]:
    caller.check_read(bot)
    data = await current_pairing(request, bot)
    if not data.get("pair_code"):
        raise ApiError(NOT_FOUND, f"bot {bot!r} has no pair code (it pairs by QR, is paired, or is not running)")
    return {"bot": bot, "pair_code": data["pair_code"]}
