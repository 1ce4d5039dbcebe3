"""``reload``: re-read the configuration file, as SIGHUP does.

No args. Result: ``{"applied": true, "message": "reloaded ...: 1 added, ..."}``; a file that
does not validate (or changes what needs a restart) is refused with an error reply of code
``refused`` whose reason is the supervisor's, and the running fleet is left as it was.
"""

from __future__ import annotations

from typing import Any

from protocol.codes import REFUSED, failure
from protocol.control import Request, ok


def execute(supervisor: Any, request: Request, answer: Any) -> None:
    if supervisor.shutting_down:
        answer(failure(request.id, REFUSED, "the supervisor is shutting down"))
        return
    # Supervisor.reload reports its outcome as a notice on the tap; catch those notices to
    # hand the same words to the operator.
    said: list[str] = []
    publish = supervisor.notice

    def notice(level: str, text: str) -> None:
        said.append(text)
        publish(level, text)

    supervisor.notice = notice
    try:
        applied = supervisor.reload()
    finally:
        del supervisor.notice  # back to the method
    message = "; ".join(said)
    if applied:
        answer(ok(request.id, {"applied": True, "message": message or "reloaded"}))
    else:
        answer(failure(request.id, REFUSED, message or "reload refused"))
