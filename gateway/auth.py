"""Who is asking, and what they may do: one Principal per request, from an API key.

``principal_from_key`` is all a caller needs (the dashboard's session cookie resolves to the
same Principal); the FastAPI dependencies below read the key from ``Authorization: Bearer``
or ``X-Api-Key`` (a WebSocket may also pass ``?key=``, since browsers cannot set its headers).
Keys are never logged: the gateway runs uvicorn without its access log, which prints queries.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, WebSocket

from .errors import FORBIDDEN, UNAUTHORIZED, ApiError
from .keys import ApiKey, KeyStore


@dataclass(frozen=True, slots=True)
class Principal:
    key: ApiKey

    @property
    def name(self) -> str:
        return self.key.name

    def sees(self, bot: str) -> bool:
        return self.key.sees(bot)

    def check_read(self, bot: str) -> None:
        if not self.key.sees(bot):
            raise ApiError(FORBIDDEN, f"key {self.name!r} is not allowed bot {bot!r}")

    def check_write(self, bot: str | None = None) -> None:
        if self.key.read_only:
            raise ApiError(FORBIDDEN, f"key {self.name!r} is read-only")
        if bot is not None:
            self.check_read(bot)

    def check_admin(self) -> None:
        """Fleet-wide operations (webhooks, dead letters) need a full key over every bot."""
        self.check_write()
        if "*" not in self.key.bots:
            raise ApiError(FORBIDDEN, f"key {self.name!r} is scoped to some bots; this needs a key for all (\"*\")")


def principal_from_key(store: KeyStore, presented: str | None) -> Principal:
    if not presented:
        raise ApiError(UNAUTHORIZED, "an API key is required (Authorization: Bearer <key>)")
    key = store.find(presented)
    if key is None:
        raise ApiError(UNAUTHORIZED, "the API key is not valid")
    return Principal(key)


def presented_key(headers: dict[str, str] | object, query: dict[str, str] | None = None) -> str | None:
    get = getattr(headers, "get")
    auth = get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return get("x-api-key") or (query or {}).get("key")


def require_key(request: Request) -> Principal:
    """FastAPI dependency: the request's Principal, or 401."""
    return principal_from_key(request.app.state.gateway.keys, presented_key(request.headers))


def websocket_principal(websocket: WebSocket) -> Principal:
    return principal_from_key(websocket.app.state.gateway.keys,
                              presented_key(websocket.headers, dict(websocket.query_params)))
