"""Commands from the supervisor to one worker, over the commands ROUTER, each answered once.

A call either gets the worker's reply, or an error reply when the bot is not running, its
worker is not connected, or it does not answer within the timeout (command_timeout).
"""

from __future__ import annotations

import errno
import uuid
from typing import TYPE_CHECKING, Any, Callable

import zmq

from protocol import ContainerState, ProtocolError
from protocol.control import Reply, Request, decode_reply, encode_request, error

from .timers import Timer

if TYPE_CHECKING:
    from .arbiter import Supervisor


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
        try:
            sv.commands.send_multipart([bot_id.encode(), encode_request(Request(request_id, command, args))],
                                       zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            reason = "its worker is not connected" if exc.errno == errno.EHOSTUNREACH else str(exc)
            on_reply(error(request_id, f"cannot reach bot {bot_id}: {reason}"))
            return
        wait = timeout if timeout is not None else sv.config.supervisor.command_timeout

        def expire() -> None:
            if self._pending.pop(request_id, None) is not None:
                on_reply(error(request_id, f"bot {bot_id} did not answer {command!r} within {wait:g} s"))

        self._pending[request_id] = (sv.timers.call_later(wait, expire), on_reply)

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
