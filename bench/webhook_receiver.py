"""A minimal webhook receiver for the bench: answers 200 and notes when each event arrived.

``python -m bench.webhook_receiver PORT``; ``GET /dump`` returns ``[[event_id, unix time], ...]``.
A raw ASGI app on uvicorn, so the receiver costs as little CPU as a Python receiver can.
"""

from __future__ import annotations

import json
import sys
import time

import uvicorn

arrivals: list[tuple[str, float]] = []


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    now = time.time()
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        body = json.dumps(arrivals).encode()
    else:
        headers = dict(scope["headers"])
        arrivals.append((headers.get(b"botvisor-event-id", b"").decode(), now))
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
