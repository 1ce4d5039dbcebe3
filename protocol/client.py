"""A client for the supervisor's control endpoint (what the CLI commands and BotHandle use).

``call`` sends one request and returns its result, or raises: NotRunning when no supervisor
answers, and for an error reply the ControlError subclass its code names (docs/control.md).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol.control import Request, decode_reply, encode_request
from protocol.curve import ClientKeys, client_keys, secure_client
from protocol.errors import BotvisorError, ProtocolError

from . import codes


class ControlError(BotvisorError):
    """The supervisor answered with an error, or did not answer. ``code``: see protocol/codes.py."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotRunning(ControlError):
    """No supervisor answers on the control endpoint."""


class AuthenticationFailed(NotRunning):
    """A tcp:// supervisor refused our CURVE key (or we have none it accepts)."""


class UnknownBot(ControlError):
    """No bot of that id is configured."""


class BotNotRunning(ControlError):
    """The bot's worker is not running (stopped, starting, in backoff, failed)."""


class CommandTimeout(ControlError):
    """The bot's worker did not answer in time (stuck, or busy)."""


#: error code -> the exception raised for it
ERRORS: dict[str, type[ControlError]] = {
    codes.UNKNOWN_BOT: UnknownBot,
    codes.NOT_RUNNING: BotNotRunning,
    codes.TIMEOUT: CommandTimeout,
}


def error_for(reason: str, result: Any) -> ControlError:
    code = result.get("code") if isinstance(result, dict) else None
    code = code if isinstance(code, str) else None
    return ERRORS.get(code or "", ControlError)(reason, code)


def lock_is_free(path: Path) -> bool:
    """True when nobody holds the supervisor's lock file (so no supervisor runs there).

    A shared lock taken and dropped at once: a supervisor starting in that instant retries its
    exclusive one (supervisor/sockets.py). Unknown (no file, no permission) counts as held.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


class ControlClient:
    def __init__(self, endpoint: str, *, timeout: float = 5.0, context: zmq.Context | None = None,
                 curve: ClientKeys | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.curve = curve
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        #: the run_dir's supervisor.lock: when nobody holds it, no supervisor runs (say so at once)
        self.lock_path: Path | None = None

    @classmethod
    def for_config(cls, config: Any, *, timeout: float = 5.0) -> ControlClient:
        """A client for the supervisor ``config`` describes (with its CURVE keys on tcp://)."""
        endpoint = config.endpoint("control")
        client = cls(endpoint, timeout=timeout, curve=client_keys(config, endpoint))
        if endpoint.startswith("ipc://"):
            client.lock_path = Path(config.run_dir) / "supervisor.lock"
        return client

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            if self.endpoint.startswith("ipc://"):
                if not Path(self.endpoint[len("ipc://"):]).exists():
                    raise NotRunning(f"no supervisor is running: {self.endpoint} does not exist")
                if self.lock_path is not None and lock_is_free(self.lock_path):
                    raise NotRunning(f"no supervisor is running: nobody holds {self.lock_path} "
                                     f"({self.endpoint} was left by one that stopped)")
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            if self.endpoint.startswith("tcp://"):
                secure_client(sock, self.curve)
                # to tell "refused our key" from "nobody there" when no answer comes
                self._monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                                        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
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
                refused = self._refused()
                self.close()  # a late reply must not be read as the answer to the next request
                if refused:
                    raise AuthenticationFailed(f"the supervisor on {self.endpoint} refused our CURVE key "
                                               "([security] client_key must be in its authorized_keys)")
                raise NotRunning(f"no answer from a supervisor on {self.endpoint} within {wait:g} s")
            try:
                reply = decode_reply(sock.recv())
            except ProtocolError as exc:
                raise ControlError(f"unreadable reply from the supervisor: {exc}") from None
            if reply.id != request.id:
                continue  # an answer to an earlier request that timed out
            if not reply.ok:
                raise error_for(reply.error or "unknown error", reply.result)
            return reply.result

    def _refused(self) -> bool:
        if self._monitor is None:
            return False
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            if event["event"] in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                return True
        return False

    def close(self) -> None:
        if self._monitor is not None:
            self._socket.disable_monitor()  # type: ignore[union-attr]
            self._monitor.close(0)
            self._monitor = None
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
