"""A client for the supervisor's control endpoint (what the CLI commands and BotHandle use)."""

from __future__ import annotations

import uuid
from typing import Any

import zmq

from protocol.control import Request, decode_reply, encode_request
from protocol.errors import BotvisorError, ProtocolError


class ControlError(BotvisorError):
    """The supervisor answered with an error, or did not answer."""


class NotRunning(ControlError):
    """No supervisor answers on the control endpoint."""


class ControlClient:
    def __init__(self, endpoint: str, *, timeout: float = 5.0, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            if self.endpoint.startswith("ipc://"):
                from pathlib import Path

                if not Path(self.endpoint[len("ipc://"):]).exists():
                    raise NotRunning(f"no supervisor is running: {self.endpoint} does not exist")
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket

    def call(self, command: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Send one request; return its result or raise ControlError with the supervisor's reason."""
        sock = self._connect()
        request = Request(uuid.uuid4().hex, command, args or {})
        sock.send(encode_request(request))
        wait = self.timeout if timeout is None else timeout
        while True:
            if not sock.poll(int(wait * 1000)):
                self.close()  # a late reply must not be read as the answer to the next request
                raise NotRunning(f"no answer from a supervisor on {self.endpoint} within {wait:g} s")
            try:
                reply = decode_reply(sock.recv())
            except ProtocolError as exc:
                raise ControlError(f"unreadable reply from the supervisor: {exc}") from None
            if reply.id != request.id:
                continue  # an answer to an earlier request that timed out
            if not reply.ok:
                raise ControlError(reply.error or "unknown error")
            return reply.result

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
