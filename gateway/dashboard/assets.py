"""The dashboard's static files, served by the gateway itself (no CDN: fleets often run offline).

A fixed list, read once: no path from a request ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import NOT_FOUND, ApiError

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
FILES = ("dash.css", "dash.js", "icon.svg")


@cache
def _load(name: str) -> tuple[bytes, str]:
    body = (STATIC / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@router.get("/ui/static/{name}")
async def static(request: Request, name: str) -> Response:
    if name not in FILES:
        raise ApiError(NOT_FOUND, f"no static file {name!r}")
    body, etag = _load(name)
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=TYPES[Path(name).suffix], headers=headers)
