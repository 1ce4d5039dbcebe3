"""Control commands: one module per command, registered here by name.

Each command is ``execute(supervisor, request, answer)`` and calls ``answer`` exactly once,
now or later (commands that wait on a worker answer from its reply or its timeout). Never
blocking: the supervisor's loop runs them inline.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from protocol.codes import UNKNOWN_COMMAND, failure
from protocol.control import Reply, Request, error

from . import (
    backup,
    bot_ops,
    history,
    lifecycle,
    logout,
    mark_read,
    ping,
    presence,
    reload,
    send,
    send_status,
    status,
)

log = logging.getLogger("botvisor.control")

Answer = Callable[[Reply], None]
Command = Callable[[Any, Request, Answer], None]

#: command name -> execute(supervisor, request, answer)
COMMANDS: dict[str, Command] = {
    "ping": ping.execute,
    "status": status.execute,
    "start": lifecycle.start,
    "stop": lifecycle.stop,
    "restart": lifecycle.restart,
    "reload": reload.execute,
    "history": history.execute,
    "send": send.execute,
    "send_status": send_status.execute,
    "presence": presence.execute,
    "mark_read": mark_read.execute,
    "logout": logout.execute,
    "backup": backup.execute,
    **bot_ops.COMMANDS,
}


def dispatch(supervisor: Any, request: Request, answer: Answer) -> None:
    command = COMMANDS.get(request.command)
    if command is None:
        answer(failure(request.id, UNKNOWN_COMMAND,
                       f"unknown command {request.command!r} (known: {', '.join(sorted(COMMANDS))})"))
        return
    try:
        command(supervisor, request, answer)
    except Exception as exc:  # a bug in one command must not take the supervisor down
        log.exception("control command %s failed", request.command)
        answer(error(request.id, f"{request.command} failed: {exc.__class__.__name__}: {exc}"))
