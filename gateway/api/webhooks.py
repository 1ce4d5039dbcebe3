"""Webhook endpoints and their dead letters (what `botvisor webhooks` does, over HTTP).

Fleet-wide, so these need a full key over every bot (``*``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from protocol.gateway_config import as_dict

from ..errors import NOT_FOUND, ApiError
from .common import ERRORS, Caller, gateway_of

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERRORS)


async def endpoints_view(gateway: Any) -> list[dict[str, Any]]:
    depth = await gateway.outbox.read(gateway.outbox.reader.depth)
    now = time.time()
    out = []
    for name, hook in gateway.dispatcher.configs:
        ep = gateway.dispatcher.endpoints[name]
        d = depth.get(name, {"pending": 0, "dead": 0, "oldest_pending": None})
        out.append({"name": name, **as_dict(hook), "state": "paused" if ep.paused else "active",
                    "pending": d["pending"], "dead": d["dead"],
                    "oldest_pending_age": round(now - d["oldest_pending"], 3) if d["oldest_pending"] else None,
                    "failing_since": ep.failing_since})
    configured = {name for name, _ in gateway.dispatcher.configs}
    for name, d in depth.items():  # rows of an endpoint no longer in the file: kept, not delivered
        if name not in configured:
            out.append({"name": name, "state": "removed", "pending": d["pending"], "dead": d["dead"],
                        "oldest_pending_age": round(now - d["oldest_pending"], 3) if d["oldest_pending"] else None})
    return out


@router.get("", summary="Endpoints with their state, queue depth and oldest undelivered age")
async def list_endpoints(request: Request, caller: Caller) -> dict[str, Any]:
    caller.check_admin()
    gateway = gateway_of(request)
    counters = await gateway.outbox.read(gateway.outbox.reader.counters)
    return {"endpoints": await endpoints_view(gateway), "counters": counters}


def _endpoint(request: Request, name: str) -> Any:
    ep = gateway_of(request).dispatcher.endpoints.get(name)
    if ep is None:
        raise ApiError(NOT_FOUND, f"no webhook endpoint named {name!r}", "name")
    return ep


@router.post("/{name}/pause", summary="Pause an endpoint (deliveries queue up)")
async def pause(request: Request, name: str, caller: Caller) -> dict[str, Any]:
    caller.check_admin()
    await _endpoint(request, name).pause("paused by an operator", by_operator=True)
    return {"name": name, "state": "paused"}


@router.post("/{name}/resume", summary="Resume a paused endpoint")
async def resume(request: Request, name: str, caller: Caller) -> dict[str, Any]:
    caller.check_admin()
    await _endpoint(request, name).resume("resumed by an operator")
    return {"name": name, "state": "active"}


@router.get("/dead", summary="Dead letters, oldest first")
async def dead(request: Request, caller: Caller, endpoint: str | None = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
               offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    caller.check_admin()
    gateway = gateway_of(request)
    rows = await gateway.outbox.read(gateway.outbox.reader.dead, endpoint, limit, offset)
    return {"dead": [r.public() for r in rows]}


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[int] | None = Field(default=None, description="dead letter ids (default: all)", max_length=100_000)
    endpoint: str | None = Field(default=None, description="only this endpoint's")


@router.post("/dead/retry", summary="Queue dead letters again (each goes to the back of its bot's lane)")
async def retry(request: Request, selection: Selection, caller: Caller) -> dict[str, int]:
    caller.check_admin()
    gateway = gateway_of(request)
    n = await gateway.outbox.run(gateway.outbox.store.retry, selection.ids, selection.endpoint)
    return {"retried": n}


@router.post("/dead/purge", summary="Delete dead letters")
async def purge(request: Request, selection: Selection, caller: Caller) -> dict[str, int]:
    caller.check_admin()
    gateway = gateway_of(request)
    n = await gateway.outbox.run(gateway.outbox.store.purge, selection.ids, selection.endpoint)
    return {"purged": n}
