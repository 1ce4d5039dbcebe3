"""The one app factory: FastAPI composed of routers, each a module of gateway/api/.

``create_app(gateway, extra_routers)``: the dashboard (gateway/dashboard/) passes its own
routers here and reuses gateway.auth's Principal and the hub; nothing else needs to change.
FastAPI, on Starlette and uvicorn: typed request models give validation and the OpenAPI 3
document from one declaration; the interactive docs page (Swagger UI) is served from the
fastapi-offline package's bundled files, never from a CDN.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from . import errors
from .api import bots, fleet, health, operations, pairing, stream, webhooks
from .limits import BodyLimit
from .runtime import Gateway

VERSION = "1"
ROUTERS = (health.router, fleet.router, bots.router, operations.router, pairing.router, webhooks.router,
           stream.router)

DESCRIPTION = """The HTTP API of a botvisor fleet (docs/http.md).

Authenticate with `Authorization: Bearer <key>` (keys: `botvisor gateway keys add`).
Errors are `{"error": {"code", "message", "field"?}}` with the control socket's codes.
"""


def create_app(gateway: Gateway, extra_routers: Iterable[APIRouter] = (), *, manage: bool = True) -> FastAPI:
    """The ASGI app. ``manage``: start and stop ``gateway`` with the app (its lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage:
            await gateway.start()
        try:
            yield
        finally:
            if manage:
                await gateway.stop()

    app = FastAPIOffline(title="botvisor gateway", version=VERSION, description=DESCRIPTION, lifespan=lifespan,
                         openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.gateway = gateway
    errors.install(app)
    for router in (*ROUTERS, *extra_routers):
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=gateway.config.gateway.max_body_bytes)  # type: ignore[arg-type]
    _security_scheme(app)
    return app


def _security_scheme(app: FastAPI) -> None:
    """Declare the bearer key in the OpenAPI document once, for every /v1 route."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http", "scheme": "bearer", "description": "an API key from `botvisor gateway keys add`"}
        for path, methods in schema.get("paths", {}).items():
            if path.startswith("/v1/"):
                for op in methods.values():
                    op["security"] = [{"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
