"""The ASGI app uvicorn starts with: the event path first, the HTTP API as soon as it is built.

Importing FastAPI, pydantic and the routers and building the app is most of the gateway's
start (about 0.5 s of CPU here), and none of it is needed to read the tap, store events and
deliver webhooks. So the lifespan starts the Gateway (tap, outbox, webhooks) at once and
builds the full app (gateway/app.py, the dashboard) on a thread meanwhile. Until it is built,
``/healthz`` and ``/readyz`` are answered here (the same checks: tap welcomed, outbox open) and
any other request waits for it, bounded by BUILD_TIMEOUT, then gets 503.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .runtime import Gateway

log = logging.getLogger("botvisor.gateway")

Build = Callable[[], Any]
#: the longest a request waits for the app to be built, seconds
BUILD_TIMEOUT = 30.0


class StagedApp:
    def __init__(self, gateway: Gateway, build: Build) -> None:
        self.gateway = gateway
        self._build = build
        self.app: Any = None
        self._built = asyncio.Event()
        self.on_built: Callable[[Any], None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] in ("/healthz", "/readyz"):
            await self._health(scope["path"], send)
        else:
            try:
                await asyncio.wait_for(self._built.wait(), BUILD_TIMEOUT)
            except TimeoutError:
                if scope["type"] == "http":
                    await _json(send, 503, {"error": {"code": "not-ready", "message": "the API is still loading"}})
                return
            await self.app(scope, receive, send)

    async def _lifespan(self, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        builder: asyncio.Future[Any] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.exception("the gateway could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                builder = asyncio.get_running_loop().run_in_executor(None, self._build)
                builder.add_done_callback(self._done)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if builder is not None and not builder.done():
                    await asyncio.wait([builder], timeout=BUILD_TIMEOUT)
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _done(self, builder: asyncio.Future[Any]) -> None:
        if builder.cancelled() or builder.exception() is not None:
            log.error("the HTTP API could not be built: %s", builder.exception())
            if self.on_built is not None:
                self.on_built(None)
            return
        self.app = builder.result()
        # what the imports and the app built live as long as the process: out of the
        # collector's sight, a full collection scans only what came since. Full collections
        # took 42-85 ms of the loop at 1,000 events/s, each a backlog the webhooks then drain
        gc.freeze()
        self._built.set()
        if self.on_built is not None:
            self.on_built(self.app)

    async def _health(self, path: str, send: Callable[[Any], Awaitable[None]]) -> None:
        """What gateway/api/health.py answers, before it is loaded."""
        if path == "/healthz":
            await _json(send, 200, {"status": "ok"})
            return
        checks = self.gateway.ready()
        ready = all(checks.values())
        await _json(send, 200 if ready else 503, {"ready": ready, "checks": checks})


async def _json(send: Callable[[Any], Awaitable[None]], status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})
