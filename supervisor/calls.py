"""Commands from the supervisor to one worker, over the commands ROUTER, each answered once.

A call either gets the worker's reply, or an error reply when the bot is not running, its
worker is not connected, or it does not answer within the timeout (command_timeout). A worker
that is alive but whose command socket is still connecting (it has just said hello) is waited
for, within the same timeout, rather than reported "not connected".
"""

from __future__ import annotations

import errno
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

import zmq

from protocol import ContainerState, ProtocolError
from protocol.control import Reply, Request, decode_reply, encode_request, error

from .timers import Timer

if TYPE_CHECKING:
    from .arbiter import Supervisor
    from .container import BotContainer

#: how often a request is offered again to a live worker whose command socket is not there yet
RETRY_S = 0.01


class WorkerCalls:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._pending: dict[str, tuple[Timer, Callable[[Reply], None]]] = {}

    def call(self, bot_id: str, command: str, args: dict[str, Any], on_reply: Callable[[Reply], None],
             timeout: float | None = None) -> None:
        sv = self.supervisor
        request_id = uuid.uuid4().hex
        container = sv.manager.find(bot_id)
        if container is None:
            on_reply(error(request_id, f"no bot {bot_id!r} is configured"))
            return
        if container.state is not ContainerState.RUNNING:
            on_reply(error(request_id, f"bot {bot_id} is {container.state}, not running"))
            return
        wait = timeout if timeout is not None else sv.config.supervisor.command_timeout
        payload = encode_request(Request(request_id, command, args))
        self._deliver(container, request_id, command, payload, on_reply, wait, time.monotonic() + wait)

    def _deliver(self, container: BotContainer, request_id: str, command: str, payload: bytes,
                 on_reply: Callable[[Reply], None], wait: float, deadline: float) -> None:
        sv = self.supervisor
        bot_id = container.bot.id
        if container.state is not ContainerState.RUNNING:  # stopped while we waited for its socket
            on_reply(error(request_id, f"bot {bot_id} is {container.state}, not running"))
            return
        try:
            sv.commands.send_multipart([bot_id.encode(), payload], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            unreachable = exc.errno == errno.EHOSTUNREACH
            if unreachable and _worker_alive(container) and time.monotonic() + RETRY_S < deadline:
                sv.timers.call_later(RETRY_S, lambda: self._deliver(container, request_id, command, payload,
                                                                    on_reply, wait, deadline))
                return
            reason = "its worker is not connected" if unreachable else str(exc)
            on_reply(error(request_id, f"cannot reach bot {bot_id}: {reason}"))
            return

        def expire() -> None:
            if self._pending.pop(request_id, None) is not None:
                on_reply(error(request_id, f"bot {bot_id} did not answer {command!r} within {wait:g} s"))

        left = max(0.0, deadline - time.monotonic())
        self._pending[request_id] = (sv.timers.call_later(left, expire), on_reply)

    def on_replies(self) -> None:
        from .poller import queued

        sv = self.supervisor
        for frames in queued(sv.commands):
            if len(frames) != 2:
                sv._reject("command_reply", "malformed worker reply")
                continue
            try:
                reply = decode_reply(frames[1])
            except ProtocolError as exc:
                sv._reject("command_reply", str(exc))
                continue
            pending = self._pending.pop(reply.id, None)
            if pending is not None:
                timer, on_reply = pending
                timer.cancel()
                on_reply(reply)


def _worker_alive(container: BotContainer) -> bool:
    process = container.process
    return process is not None and process.exitcode is None
