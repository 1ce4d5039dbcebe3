"""Driving a real NeonizeBackend from Python as Go does, for the scenarios (tests/neonize_scenarios.py,
tests/neonize_op_scenarios.py): a backend on a temporary bot directory dialling a silent proxy,
events handed in through ``client.event.execute`` as serialised protobufs, the string callbacks
called as Go calls them, and the worker loop's side pumped until a condition holds.
"""

from __future__ import annotations

import ctypes
import logging
import select
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from protocol.backoff import RestartPolicy
from protocol.config import BotConfig
from protocol.schema import to_mapping
from worker.backends.base import BackendContext


def make_backend(proxy_port: int, bot_dir: Path | None = None, **bot: Any) -> tuple[Any, list]:
    """A NeonizeBackend for bot ``n1`` dialling through the proxy on ``proxy_port``, and the list
    of what it emits; ``bot``: BotConfig keys."""
    from worker.backends.neonize import NeonizeBackend

    if bot_dir is None:
        bot_dir = Path(tempfile.mkdtemp(prefix="neonize-scenario-")) / "bot_n1"
        bot_dir.mkdir(mode=0o700)
    emitted: list = []
    config = BotConfig(id="n1", backend="neonize", proxy=f"http://127.0.0.1:{proxy_port}",
                       backoff=RestartPolicy(initial=0.5, factor=2.0, max=10.0, jitter=0.0), **bot)
    ctx = BackendContext(bot=config, bot_dir=bot_dir, emit=emitted.append, log=logging.getLogger("scenario"))
    return NeonizeBackend(ctx), emitted


def pump(backend: Any, until: Callable[[], bool], timeout: float = 10.0, now: float | None = None) -> None:
    """Run the backend's side of the worker loop (wait on its wakeup fd, poll, at ``now`` when
    given) until ``until()``."""
    deadline = time.monotonic() + timeout
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the backend did not get there in time")
        select.select([backend.wakeup_fd()], [], [], min(left, 0.05))
        backend.poll(time.monotonic() if now is None else now)


def go_event(client: Any, message: Any) -> None:
    """Hand ``message`` to Python as neonize's Go event loop does (CallbackFunction)."""
    from neonize.events import EVENT_TO_INT

    raw = message.SerializePartialToString()  # Go sets every required field; the parser takes either
    buffer = ctypes.create_string_buffer(raw, len(raw))
    client.event.execute(0, ctypes.addressof(buffer), len(raw), EVENT_TO_INT[type(message)])


def go_string_callback(fn: Any, text: bytes) -> None:
    """Call ``fn`` the way Go calls the QR and login-status callbacks: func_string(uuid, text)."""
    from neonize._binder import func_string

    uuid, value = ctypes.create_string_buffer(b"n1"), ctypes.create_string_buffer(text)
    func_string(fn)(ctypes.addressof(uuid), ctypes.addressof(value))


def silent_proxy() -> Any:
    from tests.test_neonize_worker import SilentProxy

    return SilentProxy()


def online_backend(**bot: Any) -> tuple[Any, list, Any]:
    """A started backend whose client Go has told it is connected (the bot online): the backend,
    what it emitted, and the silent proxy it dialled (close it at the end)."""
    from neonize.proto import Neonize_pb2 as pb

    from protocol import BotStatus

    proxy = silent_proxy()
    backend, emitted = make_backend(proxy.port, **bot)
    backend.start(time.monotonic())
    go_event(backend.client, pb.Connected(status=True))
    pump(backend, lambda: backend.status is BotStatus.ONLINE)
    return backend, emitted, proxy


def jid(user: str, server: str = "s.whatsapp.net") -> Any:
    """A JID as Go fills one in."""
    from neonize.proto import Neonize_pb2 as pb

    return pb.JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def refused_port() -> int:
    from tests.test_neonize_worker import refused_port as port

    return port()


def shape(data: Any) -> dict:
    return {"event": type(data).__name__, **to_mapping(data)}


def settled(backend: Any, result: Any, timeout: float = 60.0) -> Any:
    """An operation's result: a Pending (its call on the I/O thread) driven to its end."""
    from worker.offload import Pending

    return backend.io.wait(result, timeout) if isinstance(result, Pending) else result
