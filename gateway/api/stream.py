"""``WS /v1/stream``: the tap's messages as JSON, filtered by bot and type, with their seq.

Query: ``bot`` and ``type`` (repeatable; globs for bots; types are event types, ``state``,
kinds such as ``heartbeat``, or ``gateway``), ``shard`` (repeatable, in a [cluster]: what those
shards' taps carried), ``key`` (or the Authorization header). Each
message is the tap's message with ``kind``, ``bot``, ``pid`` and ``seq`` (per worker, from 0)
and an ``id`` for events. A client that was too slow is told with ``dropped`` (how many
messages it lost so far) on the next message, and can fetch them from the history.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..auth import websocket_principal
from ..errors import ApiError
from ..hub import Filter

router = APIRouter(tags=["stream"])

#: WebSocket close codes (4000-4999 are the application's): an authentication failure, a bad query
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    try:
        caller = websocket_principal(websocket)
    except ApiError as exc:  # accepted then closed: a browser sees the close code, never an HTTP status
        await websocket.accept()
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=exc.message[:120])
        return
    gateway = websocket.app.state.gateway
    params = websocket.query_params
    shards = params.getlist("shard")
    bad = next((v for v in shards if not v.isdigit()), None)
    if bad is not None:
        await websocket.accept()
        await websocket.close(code=CLOSE_BAD_REQUEST, reason=f"shard must be a shard number, got {bad!r}"[:120])
        return
    filt = Filter(tuple(params.getlist("bot")), tuple(params.getlist("type")), caller.sees,
                  tuple(int(v) for v in shards))
    await websocket.accept()
    sub = gateway.hub.subscribe(filt, gateway.config.gateway.stream_queue)
    reported = 0
    closed = asyncio.ensure_future(_closed(websocket))
    try:
        await websocket.send_text(json.dumps({"kind": "hello", "filter": {"bot": list(filt.bots),
                                                                            "type": list(filt.types),
                                                                            "shard": list(filt.shards)}}))
        while True:
            getter = asyncio.ensure_future(sub.get())
            done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                getter.cancel()
                return
            body = getter.result()
            out = {k: v for k, v in body.items() if not k.startswith("_")}
            if sub.dropped != reported:
                gateway.metrics.stream_dropped.inc(sub.dropped - reported)
                reported = sub.dropped
                out["dropped"] = sub.dropped
            await websocket.send_text(json.dumps(out, default=str))
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        closed.cancel()
        sub.close()


async def _closed(websocket: WebSocket) -> None:
    """Returns when the client goes away (we read nothing else from it)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
