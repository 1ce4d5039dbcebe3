"""Request bodies over [gateway] max_body_bytes are refused with 413 before the app sees them.

A pure ASGI middleware: a declared Content-Length over the limit is refused at once; any
other body (chunked) is read here, at most limit + 1 bytes, and handed on whole, so the
limit holds whatever the client declares. Bodies are small (1 MiB by default), so holding
one in memory costs nothing a JSON parser would not spend anyway.
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
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, size: int) -> None:
        error = ApiError(TOO_LARGE, f"the request body ({size} bytes or more) is over the {self.limit}-byte limit "
                         "([gateway] max_body_bytes)", "body")
        await response(error)(scope, receive, send)
