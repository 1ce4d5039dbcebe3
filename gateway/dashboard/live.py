"""``GET /ui/events``: the gateway's event stream for the pages, as server-sent events.

The same hub subscription as the API's WebSocket (gateway/hub.py), authenticated by the
session cookie instead of a key (an EventSource cannot send headers, and a key in a URL would
end up in logs). Filtered by the key's scope and, for a bot's page, by the bot. A QR code
arrives drawn: the server adds its SVG to the event, so the page needs no QR library.
A slow page loses messages (counted in ``dropped``) rather than slowing anything else; the
pages refetch their tables on any change, so they never show a stale state for long.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ..api.common import gateway_of
from ..hub import Filter
from .render import qr_ref, qr_svg
from .session import SignInRequired, Visitor, visitor

router = APIRouter(include_in_schema=False)
Who = Annotated[Visitor, Depends(visitor)]
#: a comment line this often keeps proxies from closing an idle stream, and notices a shutdown
KEEPALIVE = 15.0
#: how often the stream looks whether the server is stopping (so it never holds up a shutdown)
POLL = 1.0
#: the queue of one page (a page far behind refetches rather than replays)
QUEUE = 2000
#: how often an open stream checks that its session still holds (sign-out, a revoked key)
RECHECK = 5.0


def for_page(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if not k.startswith("_")}
    data = out.get("data")
    if out.get("type") == "connection-update" and isinstance(data, dict) and data.get("qr"):
        out["qr_svg"] = qr_svg(data["qr"])
        out["qr_ref"] = qr_ref(data["qr"])
    return out


@router.get("/ui/events")
async def events(request: Request, who: Who, bot: str | None = None) -> StreamingResponse:
    gateway = gateway_of(request)
    filt = Filter((bot,) if bot else (), (), who.principal.sees)
    sub = gateway.hub.subscribe(filt, QUEUE)

    async def stream() -> AsyncIterator[str]:
        reported = 0
        idle = 0.0
        checked = time.monotonic()
        try:
            yield "retry: 1000\n\n"
            while not _stopping(request):
                if time.monotonic() - checked >= RECHECK:
                    checked = time.monotonic()
                    try:
                        visitor(request)
                    except SignInRequired:
                        return  # the page's next reconnect gets 401, and it goes to the sign-in page
                try:
                    body = await asyncio.wait_for(sub.get(), POLL)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    idle += POLL
                    if idle >= KEEPALIVE:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                    continue
                idle = 0.0
                out = for_page(body)
                if sub.dropped != reported:
                    reported = sub.dropped
                    out["dropped"] = sub.dropped
                yield f"data: {json.dumps(out, default=str, separators=(',', ':'))}\n\n"
        finally:
            sub.close()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _stopping(request: Request) -> bool:
    gateway = gateway_of(request)
    server = getattr(request.app.state, "server", None)
    return not gateway.started or bool(getattr(server, "should_exit", False))
