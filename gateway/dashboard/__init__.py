"""The operators' web dashboard (docs/dashboard.md), served by the gateway under ``/ui/``.

Server-rendered pages (Jinja2 on the gateway's FastAPI), one small hand-written script for
the live updates, every asset served from here. Signed in with a gateway API key whose scope
limits what is shown and allowed (session.py). ``mount(app)`` adds it to the gateway's app.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from . import actions, assets, live, pages
from .pages import PageError
from .render import page
from .session import CsrfRefused, SignInRequired

router = APIRouter(include_in_schema=False)
for _part in (pages.router, actions.router, live.router, assets.router):
    router.include_router(_part)


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.add_exception_handler(SignInRequired, _sign_in)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfRefused, _csrf)  # type: ignore[arg-type]
    app.add_exception_handler(PageError, _page_error)  # type: ignore[arg-type]


async def _sign_in(request: Request, _: SignInRequired) -> Response:
    """To the sign-in page (a page comes back after it; a form's POST is dropped, never replayed)."""
    if request.url.path == "/ui/events":  # an EventSource cannot follow a redirect to a page
        return JSONResponse({"error": {"code": "unauthorized", "message": "sign in first"}}, status_code=401)
    if request.method != "GET":
        return RedirectResponse("/ui/login", status_code=303)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)


async def _csrf(request: Request, exc: CsrfRefused) -> Response:
    return page(request, "error.html", None, status_code=403, title="Refused: no valid CSRF token",
                message=exc.why)


async def _page_error(request: Request, exc: PageError) -> Response:
    try:
        who = pages.visitor(request)
    except SignInRequired:
        who = None
    return page(request, "error.html", who, status_code=exc.status, title=exc.title, message=exc.message)
