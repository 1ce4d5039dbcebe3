"""Machine-readable error codes of control replies.

An error reply is ``{id, ok: false, error: "<reason for humans>", result: {"code": "<code>"}}``
(docs/control.md). Clients branch on the code, never on the wording of ``error``.
"""

from __future__ import annotations

from protocol.control import Reply

#: the request could not be decoded, or its arguments are wrong
BAD_REQUEST = "bad-request"
#: no command of that name
UNKNOWN_COMMAND = "unknown-command"
#: no bot of that id is configured
UNKNOWN_BOT = "unknown-bot"
#: the bot's worker is not running (stopped, backoff, failed, starting) or not connected
NOT_RUNNING = "not-running"
#: the worker did not answer within the command's timeout
TIMEOUT = "timeout"
#: the worker answered with an error (not connected to WhatsApp, bad argument, ...)
WORKER_ERROR = "worker-error"
#: the supervisor refused (a reload of an invalid file, shutting down)
REFUSED = "refused"


def failure(request_id: str, code: str, reason: str) -> Reply:
    """An error reply carrying ``code`` for programs and ``reason`` for people."""
    return Reply(request_id, False, result={"code": code}, error=reason)


def salvage_id(raw: bytes) -> str:
    """The ``id`` of a request that failed to decode, when one can be read, else ``""``:
    so a client whose request was malformed still gets a reply it can match."""
    import msgpack

    try:
        body = msgpack.unpackb(raw, raw=False)
    except Exception:
        return ""
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, str) and len(request_id) <= 256 else ""
