"""What the pages change: lifecycle, logout, send, webhooks. Each is a POST with the CSRF token.

Every action answers with a redirect back to its page (post/redirect/get: a reload never
repeats it) and its outcome as a flash message. Destructive ones (start, stop, restart, logout,
purge) are reached through a confirmation page first; the confirmation is a plain form, so it
works with the keyboard and without JavaScript.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..api.common import BotId, bot_call, control, gateway_of
from ..errors import ApiError
from .pages import PageError, bot_status
from .render import page
from .session import COOKIE, Visitor, checked_form, clear_cookie, sessions_of, visitor

router = APIRouter(include_in_schema=False)
Who = Annotated[Visitor, Depends(visitor)]
Action = Annotated[str, Path(pattern=r"^(start|stop|restart|logout)$")]
#: what each action's confirmation says it does
CONFIRM = {
    "start": "Start the bot's worker.",
    "stop": "Stop the bot's worker. It stays stopped until someone starts it.",
    "restart": "Stop the bot's worker and start a new one.",
    "logout": "Log the bot out of WhatsApp. Its session is deleted: it must be paired again with a QR code.",
}
#: the send form's limits (the API's own)
MAX_TO, MAX_TEXT = 256, 65536


def _writer(who: Visitor, bot: str | None = None) -> None:
    if not who.can_write:
        raise PageError(403, "Not allowed", f"the key {who.principal.name!r} is read-only")
    if bot is not None and not who.principal.sees(bot):
        raise PageError(403, "Not allowed", f"the key {who.principal.name!r} is not allowed bot {bot!r}")


def back(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


@router.post("/ui/logout")
async def sign_out(request: Request, who: Who) -> Response:
    await checked_form(request, who)
    sessions_of(request).drop(who.session.token)
    response = back("/ui/login")
    clear_cookie(response, request, COOKIE)
    return response


# -- a bot's lifecycle (send is registered first: "/{action}" would match its path) -----------------
@router.get("/ui/bots/{bot}/confirm/{action}", response_class=HTMLResponse)
async def confirm(request: Request, bot: BotId, action: Action, who: Who) -> Response:
    _writer(who, bot)
    await bot_status(request, who, bot)
    title, button = ((f"Log {bot} out of WhatsApp?", f"Log out {bot}") if action == "logout"
                     else (f"{action.capitalize()} {bot}?", f"{action.capitalize()} {bot}"))
    return page(request, "confirm.html", who, title=title, explain=CONFIRM[action],
                action=f"/ui/bots/{bot}/{action}", button=button, cancel=f"/ui/bots/{bot}",
                danger=action != "start", fields={})


@router.post("/ui/bots/{bot}/send")
async def send(request: Request, bot: BotId, who: Who) -> Response:
    form = await checked_form(request, who)
    _writer(who, bot)
    to, text = (form.get("to") or "").strip(), form.get("text") or ""
    if not to or not text.strip():
        who.session.flash("A send needs a recipient and a text.", "error", field="to" if not to else "text")
        return back(f"/ui/bots/{bot}#send")
    if len(to) > MAX_TO or len(text) > MAX_TEXT:
        who.session.flash(f"Too long: at most {MAX_TO} characters for the recipient, {MAX_TEXT} for the text.",
                          "error")
        return back(f"/ui/bots/{bot}#send")
    try:
        reply = await bot_call(gateway_of(request), bot, "send", {"to": to, "text": text})
    except ApiError as exc:
        who.session.flash(f"Send refused: {exc.message}", "error")
        return back(f"/ui/bots/{bot}#send")
    outcome = send_outcome(reply)
    who.session.flash(f"Send {outcome['id']} to {to}: {outcome['state']}.", "ok", send=outcome)
    return back(f"/ui/bots/{bot}#send")


@router.post("/ui/bots/{bot}/{action}")
async def act(request: Request, bot: BotId, action: Action, who: Who) -> Response:
    await checked_form(request, who)
    _writer(who, bot)
    await bot_status(request, who, bot)
    gateway = gateway_of(request)
    try:
        if action == "logout":
            await bot_call(gateway, bot, "logout")
            who.session.flash(f"{bot} logged out of WhatsApp.", "ok")
        else:
            result = await control(gateway, action, {"bots": [bot]})
            change = result.get(bot, result)
            who.session.flash(f"{action.capitalize()} {bot}: {change.get('before', '?')} → {change.get('after', '?')}.",
                              "ok")
    except ApiError as exc:
        who.session.flash(f"{action.capitalize()} {bot} refused: {exc.message}", "error")
    return back(f"/ui/bots/{bot}")


def send_outcome(reply: dict[str, Any]) -> dict[str, Any]:
    """The send's id and state from the worker's reply (durable sends say ``state``; older, ``sent``)."""
    state = reply.get("state") or ("sent" if reply.get("sent") else "queued" if reply.get("queued") else "unknown")
    return {"id": str(reply.get("id", "?")), "state": state, "message_id": reply.get("message_id"),
            "to": reply.get("to")}


# -- webhooks ------------------------------------------------------------------------------
def _admin(who: Visitor) -> None:
    if not who.is_admin:
        raise PageError(403, "Not allowed", "webhooks are fleet-wide: they need a full key over every bot (\"*\")")


def _endpoint(request: Request, name: str) -> Any:
    ep = gateway_of(request).dispatcher.endpoints.get(name)
    if ep is None:
        raise PageError(404, "No such endpoint", f"no webhook endpoint named {name!r}")
    return ep


@router.post("/ui/webhooks/{name}/pause")
async def pause(request: Request, name: str, who: Who) -> Response:
    await checked_form(request, who)
    _admin(who)
    await _endpoint(request, name).pause("paused by an operator (dashboard)", by_operator=True)
    who.session.flash(f"Endpoint {name} paused: deliveries queue up until it is resumed.", "ok")
    return back("/ui/webhooks")


@router.post("/ui/webhooks/{name}/resume")
async def resume(request: Request, name: str, who: Who) -> Response:
    await checked_form(request, who)
    _admin(who)
    await _endpoint(request, name).resume("resumed by an operator (dashboard)")
    who.session.flash(f"Endpoint {name} resumed.", "ok")
    return back("/ui/webhooks")


def _selection(form: dict[str, str]) -> tuple[list[int] | None, str | None]:
    ids = None
    if form.get("id"):
        try:
            ids = [int(form["id"])]
        except ValueError:
            raise PageError(400, "Bad request", f"dead letter id {form['id']!r} is not a number") from None
    return ids, form.get("endpoint") or None


def _what(ids: list[int] | None, endpoint: str | None) -> str:
    if ids:
        return f"dead letter {ids[0]}"
    return f"every dead letter of {endpoint}" if endpoint else "every dead letter"


@router.get("/ui/webhooks/confirm-purge", response_class=HTMLResponse)
async def confirm_purge(request: Request, who: Who, id: str = "", endpoint: str = "") -> Response:
    _admin(who)
    ids, name = _selection({"id": id, "endpoint": endpoint})
    return page(request, "confirm.html", who, title=f"Purge {_what(ids, name)}?",
                explain="Purged dead letters are deleted for good: they can no longer be retried.",
                action="/ui/webhooks/dead/purge", button="Purge", cancel="/ui/webhooks", danger=True,
                fields={k: v for k, v in (("id", id), ("endpoint", endpoint)) if v})


@router.post("/ui/webhooks/dead/{what}")
async def dead_letters(request: Request, what: Annotated[str, Path(pattern=r"^(retry|purge)$")], who: Who) -> Response:
    form = await checked_form(request, who)
    _admin(who)
    ids, endpoint = _selection(form)
    gateway = gateway_of(request)
    store = gateway.outbox.store
    n = await gateway.outbox.run(store.retry if what == "retry" else store.purge, ids, endpoint)
    done = "queued again" if what == "retry" else "purged"
    who.session.flash(f"{n} dead letter{'s' if n != 1 else ''} {done} ({_what(ids, endpoint)}).", "ok")
    return back("/ui/webhooks")
