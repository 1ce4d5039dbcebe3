"""Dashboard sessions: a signed-in browser holds a random token, never the API key.

Signing in with a gateway API key makes a server-side session (in the gateway's memory: a
gateway restart signs everyone out, which is the safe direction). The cookie carries only the
session's random token, HttpOnly (no script can read it), SameSite=Lax, and Secure when the
page was served over TLS. Each request resolves the session back to the key's record, so a
revoked key (``botvisor gateway keys revoke``) ends its sessions at the next click.

CSRF: every state-changing request (POST) must carry the session's token, as a form field or
an ``X-CSRF-Token`` header, compared in constant time; a cross-site Origin is refused too. The
sign-in form itself is protected the same way by a short-lived pre-session cookie
(double submit), so nobody can sign a victim's browser into the attacker's key.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from ..auth import Principal
from ..keys import ApiKey, KeyStore

COOKIE = "botvisor_session"
LOGIN_COOKIE = "botvisor_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: a session not used for this long ends
IDLE = 12 * 3600.0
#: and none lives longer than this
LIFETIME = 7 * 86400.0
#: sessions kept at once (the oldest go first): memory stays bounded whatever signs in
MAX_SESSIONS = 10_000
PATH = "/ui"


@dataclass(slots=True)
class Session:
    token: str
    key_name: str
    key_hash: str
    csrf: str
    created: float
    seen: float
    #: messages shown once on the next page (a redirect after a POST carries its outcome here)
    flashes: list[dict[str, Any]] = field(default_factory=list)

    def flash(self, text: str, level: str = "info", **extra: Any) -> None:
        self.flashes.append({"text": text, "level": level, **extra})
        del self.flashes[:-10]

    def take_flashes(self) -> list[dict[str, Any]]:
        out, self.flashes = self.flashes, []
        return out


class Sessions:
    def __init__(self) -> None:
        self._by_token: dict[str, Session] = {}

    def create(self, key: ApiKey) -> Session:
        now = time.time()
        session = Session(secrets.token_urlsafe(32), key.name, key.sha256, secrets.token_urlsafe(32), now, now)
        self._by_token[session.token] = session
        while len(self._by_token) > MAX_SESSIONS:
            self._by_token.pop(next(iter(self._by_token)))
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        now = time.time()
        if now - session.seen > IDLE or now - session.created > LIFETIME:
            self.drop(token)
            return None
        session.seen = now
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)


def sessions_of(request: Request) -> Sessions:
    state = request.app.state
    if not hasattr(state, "dashboard_sessions"):
        state.dashboard_sessions = Sessions()
    return state.dashboard_sessions


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in page, other requests get 401."""


class CsrfRefused(Exception):
    """A state-changing request without the session's token (or from another origin)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in browser: its session and the Principal of the key it signed in with."""

    session: Session
    principal: Principal

    @property
    def can_write(self) -> bool:
        return not self.principal.key.read_only

    @property
    def is_admin(self) -> bool:
        return self.can_write and "*" in self.principal.key.bots


def _key_of(store: KeyStore, session: Session) -> ApiKey | None:
    for key in store.keys():
        if key.name == session.key_name and hmac.compare_digest(key.sha256, session.key_hash):
            return key
    return None


def visitor(request: Request) -> Visitor:
    """FastAPI dependency: the signed-in visitor, or SignInRequired."""
    store = sessions_of(request)
    token = request.cookies.get(COOKIE)
    session = store.get(token)
    if session is None:
        raise SignInRequired()
    key = _key_of(request.app.state.gateway.keys, session)
    if key is None:  # revoked (or replaced) since sign-in
        store.drop(token)
        raise SignInRequired()
    return Visitor(session, Principal(key))


def served_as(request: Request) -> tuple[str, str]:
    """The scheme and host the browser used: a TLS proxy in front says so in X-Forwarded-*.

    Trusting these headers is safe here: a cross-site form cannot set them, and the worst a
    client that does can get is a cookie its own browser will not send back.
    """
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip() or request.url.scheme
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host", "")
    return scheme, host


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site (Origin or Referer)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True  # not a browser, or one that sent neither: the token still decides
    if source == "null":
        return False
    parts = urlsplit(source)
    return (parts.scheme, parts.netloc) == served_as(request)


def check_csrf(request: Request, expected: str, presented: str | None) -> None:
    if not same_origin(request):
        raise CsrfRefused("the request came from another site")
    if not presented:
        raise CsrfRefused("the form's CSRF token is missing (reload the page and try again)")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise CsrfRefused("the form's CSRF token does not match this session (reload the page and try again)")


async def form_of(request: Request) -> dict[str, str]:
    """The POST's form fields (text only: the dashboard uploads nothing)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def checked_form(request: Request, who: Visitor) -> dict[str, str]:
    """The form of a state-changing request, after its CSRF check."""
    form = await form_of(request)
    check_csrf(request, who.session.csrf, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    return form


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True, samesite="lax",
                        secure=served_as(request)[0] == "https")


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=PATH, httponly=True, samesite="lax", secure=served_as(request)[0] == "https")
