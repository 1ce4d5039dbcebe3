"""``/healthz`` (the process answers), ``/readyz`` (it has the tap and the outbox), ``/metrics``, ``/v1``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .common import gateway_of

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Connected to the supervisor's tap, outbox open",
            responses={503: {"description": "not ready yet (the body says what is missing)"}})
async def readyz(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    checks = gateway.ready()
    ready = all(checks.values())
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    taps = gateway.tap_states()
    if taps and None not in taps:  # a [cluster]: which shards' taps have welcomed us (not part of ready: docs/http.md)
        body["shards"] = {str(k): welcomed for k, welcomed in taps.items()}
        body["webhooks_from"] = "fleet" if gateway.shard is None else gateway.shard
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics of the gateway (text format)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    gateway = gateway_of(request)
    if gateway.started:
        await refresh_gauges(gateway)
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def refresh_gauges(gateway: Any) -> None:
    import time

    depth = await gateway.outbox.read(gateway.outbox.reader.depth)
    counters = await gateway.outbox.read(gateway.outbox.reader.counters)
    now = time.time()
    m = gateway.metrics
    for name in set(gateway.dispatcher.endpoints) | set(depth):
        entry = depth.get(name, {"pending": 0, "dead": 0, "oldest_pending": None})
        m.queue_depth.labels(name).set(entry["pending"])
        m.dead_letters.labels(name).set(entry["dead"])
        m.oldest.labels(name).set(now - entry["oldest_pending"] if entry["oldest_pending"] else 0)
    m.dropped.labels("dead").set(counters.get("dropped_dead", 0))
    m.dropped.labels("pending").set(counters.get("dropped_pending", 0))
    m.stream_clients.set(gateway.hub.subscribers)


@router.get("/v1", summary="Where things are: the API, its docs, the metrics")
async def index(request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    listen = gateway.config.metrics.listen
    return {"server": gateway.server, "openapi": "/openapi.json", "docs": "/docs", "metrics": "/metrics",
            "supervisor_metrics": f"http://{listen}/metrics" if listen else None, "stream": "/v1/stream"}
