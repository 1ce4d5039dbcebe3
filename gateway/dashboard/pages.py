"""The pages: sign-in, fleet, bot, webhooks (GET only; what they change is in actions.py)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..api.common import BotId, control, gateway_of
from ..api.pairing import current_pairing
from ..api.webhooks import endpoints_view
from ..errors import ApiError
from . import views
from .render import page
from .session import (COOKIE, LOGIN_COOKIE, Visitor, check_csrf, clear_cookie, form_of, sessions_of, set_cookie,
                      visitor)

router = APIRouter(include_in_schema=False)
Who = Annotated[Visitor, Depends(visitor)]
#: history entries the bot page shows (newest first)
HISTORY = 200


class PageError(Exception):
    """Rendered as the error page with this status (an unknown bot, no supervisor, out of scope)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


async def ask(request: Request, command: str, args: dict[str, Any] | None = None) -> Any:
    """A control call for a page: its failure becomes the error page, not a JSON body."""
    try:
        return await control(gateway_of(request), command, args)
    except ApiError as exc:
        raise PageError(exc.status, "The supervisor did not answer" if exc.status == 503 else "Refused",
                        exc.message) from None


def safe_next(target: str | None) -> str:
    """Only a path of the dashboard itself (no open redirect to another site)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


# -- sign-in -------------------------------------------------------------------------------
@router.get("/")
@router.get("/ui")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=303)


@router.get("/ui/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/ui/") -> Response:
    return _login_page(request, next)


def _login_page(request: Request, next: str, error: str | None = None, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", None, status_code=status_code, csrf=token, next=safe_next(next),
                    error=error)
    set_cookie(response, request, LOGIN_COOKIE, token, max_age=3600)
    return response


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    check_csrf(request, request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24), form.get("csrf"))
    presented = (form.get("key") or "").strip()
    key = request.app.state.gateway.keys.find(presented) if presented else None
    if key is None:
        return _login_page(request, form.get("next", "/ui/"), "That is not a valid API key of this gateway.", 401)
    session = sessions_of(request).create(key)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_cookie(response, request, COOKIE, session.token, max_age=None)
    clear_cookie(response, request, LOGIN_COOKIE)
    return response


# -- fleet ---------------------------------------------------------------------------------
async def fleet_rows(request: Request, who: Visitor) -> list[views.FleetRow]:
    status = await ask(request, "status")
    pairing = gateway_of(request).hub.pairing
    return [views.fleet_row(b, b.get("bot_id") in pairing) for b in status.get("bots", [])
            if who.principal.sees(b.get("bot_id", ""))]


@router.get("/ui/", response_class=HTMLResponse)
async def fleet(request: Request, who: Who) -> Response:
    return await _fleet(request, who, "fleet.html")


@router.get("/ui/fleet/table", response_class=HTMLResponse)
async def fleet_table(request: Request, who: Who) -> Response:
    """The counts and the table's body alone: what the live script swaps in."""
    return await _fleet(request, who, "_fleet_table.html", fragment=True)


async def _fleet(request: Request, who: Visitor, template: str, fragment: bool = False) -> Response:
    rows = await fleet_rows(request, who)
    query = views.FleetQuery.parse(request.query_params)
    return page(request, template, who, fragment=fragment, rows=query.apply(rows), total=len(rows),
                counts=views.counts(rows), query=query, states=views.STATES,
                clustered=gateway_of(request).bridge.clustered)


# -- one bot -------------------------------------------------------------------------------
async def bot_status(request: Request, who: Visitor, bot: str) -> dict[str, Any]:
    if not who.principal.sees(bot):
        raise PageError(403, "Not allowed", f"the key {who.principal.name!r} is not allowed bot {bot!r}")
    status = await ask(request, "status")
    for entry in status.get("bots", []):
        if entry.get("bot_id") == bot:
            return entry
    raise PageError(404, "No such bot", f"no bot {bot!r} is configured")


@router.get("/ui/bots/{bot}", response_class=HTMLResponse)
async def bot_page(request: Request, bot: BotId, who: Who) -> Response:
    status = await bot_status(request, who, bot)
    history = (await ask(request, "history", {"bot": bot, "limit": HISTORY})).get("events", [])
    pairing = await current_pairing(request, bot) if status.get("container_state") == "running" else {}
    return page(request, "bot.html", who, bot=bot, status=status, history=list(reversed(history)),
                pairing=pairing, row=views.fleet_row(status, bool(pairing)), outcomes=views.send_outcomes(history))


@router.get("/ui/bots/{bot}/status", response_class=HTMLResponse)
async def bot_status_fragment(request: Request, bot: BotId, who: Who) -> Response:
    status = await bot_status(request, who, bot)
    pairing = await current_pairing(request, bot) if status.get("container_state") == "running" else {}
    return page(request, "_bot_status.html", who, fragment=True, bot=bot, status=status,
                row=views.fleet_row(status, bool(pairing)))


# -- webhooks ------------------------------------------------------------------------------
@router.get("/ui/webhooks", response_class=HTMLResponse)
async def webhooks(request: Request, who: Who, endpoint: str | None = None) -> Response:
    if not who.is_admin:
        raise PageError(403, "Not allowed", "webhooks are fleet-wide: they need a full key over every bot (\"*\")")
    gateway = gateway_of(request)
    endpoints = await endpoints_view(gateway)
    dead = await gateway.outbox.read(gateway.outbox.reader.dead, endpoint or None, 200, 0)
    counters = await gateway.outbox.read(gateway.outbox.reader.counters)
    return page(request, "webhooks.html", who, endpoints=endpoints, dead=[r.public() for r in dead],
                counters=counters, endpoint=endpoint or "")
