"""Request bodies over [gateway] max_body_bytes are refused with 413 before they are read whole.

A pure ASGI middleware: a declared Content-Length over the limit is refused at once; a body
without one (chunked) is counted as it streams in and refused when it passes the limit.
"""

from __future__ import annotations

from typing import Any

from .errors import TOO_LARGE, ApiError, response


class BodyLimit:
    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, int(declared))
            return
        seen = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send, seen)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, size: int) -> None:
        error = ApiError(TOO_LARGE, f"the request body ({size} bytes or more) is over the {self.limit}-byte limit "
                         "([gateway] max_body_bytes)", "body")
        await response(error)(scope, receive, send)


class _TooLarge(Exception):
    pass
