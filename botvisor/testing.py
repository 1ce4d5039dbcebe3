"""Run an app in-process for tests: a simulated session, no supervisor, no ZeroMQ or network sockets.

    from botvisor.testing import AppTester
    from mybot import bot

    def test_ping():
        with AppTester(bot) as t:
            t.say("ping")
            assert t.replies() == ["pong"]

``say`` feeds a message the way the simulated session delivers one (its ``simulate`` operation)
and returns once every handler it started has finished; ``sent`` lists what the session sent for
the app; ``advance(seconds)`` moves the app's clock (dialog timeouts, ``ctx.now()``,
``typing``); ``restart()`` stops the app and starts it again on the same state database, as a
worker restart would (``restart(crash=True)`` skips ``on_stop``, like a SIGKILL).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from protocol import BotStatus
from protocol.config import BotConfig, SimulatedSettings
from protocol.events import ConnectionUpdate, ErrorEvent, MessageUpsert
from worker import commands as worker_commands
from worker.app.ops import QUOTE_IF_KNOWN, run_for_app
from worker.app.runtime import AppRuntime, Clock
from worker.backends.base import BackendContext
from worker.backends.simulated import SimulatedBackend
from worker.errors import CommandError

from .app import Bot
from .errors import OperationError



class ManualClock(Clock):
    """Real time plus what the test advanced; sleeping advances it instead of waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.offset += max(0.0, seconds)
        await asyncio.sleep(0)


def _jid(value: str) -> str:
    return value if "@" in value else f"{value.lstrip('+')}@s.whatsapp.net"


class AppTester:
    def __init__(self, bot: Bot, *, bot_id: str = "test", app_config: dict[str, Any] | None = None,
                 directory: str | Path | None = None, handler_timeout: float = 5.0,
                 phone: str = "15550000001", wait: float = 10.0) -> None:
        if not isinstance(bot, Bot):
            raise TypeError(f"AppTester runs a botvisor Bot, got {type(bot).__name__}")
        self.bot, self.wait = bot, wait
        self.config = BotConfig(id=bot_id, phone_number=phone, handler_timeout=handler_timeout,
                                app_config=dict(app_config or {}), simulated=SimulatedSettings(connect_delay=0.0))
        self._own_dir = directory is None
        self.directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="botvisor-app-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock = ManualClock()
        #: every operation the app called, in order: {"op": name, **args, "result": ...}
        self.calls: list[dict[str, Any]] = []
        #: every event the session emitted (incoming and the bot's own messages, connection updates)
        self.events: list[Any] = []
        #: the app's error events (handler-error, handler-timeout)
        self.errors: list[ErrorEvent] = []
        self._lock = threading.RLock()
        self.backend: SimulatedBackend | None = None
        self._sent_before: list[dict[str, Any]] = []
        self.runtime: AppRuntime | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> AppTester:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        """Connect the simulated session and start the app (its on_start hooks have run on return)."""
        ctx = BackendContext(bot=self.config, bot_dir=self.directory, emit=self._session_event,
                             log=logging.getLogger(f"botvisor.backend.test.{self.config.id}"))
        self.backend = SimulatedBackend(ctx)
        self.runtime = AppRuntime(self.bot, bot_id=self.config.id, app_config=self.config.app_config,
                                  bot_dir=self.directory, handler_timeout=self.config.handler_timeout,
                                  call=self._call, emit=self._app_event,
                                  log=logging.getLogger(f"botvisor.app.{self.config.id}"), clock=self.clock)
        self.runtime.start()
        self.runtime.started.result(self.wait)  # an on_start failure raises here
        with self._lock:
            now = time.monotonic()
            self.backend.start(now)
            deadline = now + self.wait
            while self.backend.status is not BotStatus.ONLINE:
                if time.monotonic() > deadline:
                    raise AssertionError("the simulated session did not open")
                self.backend.poll(time.monotonic())
        self.settle()

    def stop(self) -> None:
        """Stop the app as a worker stopping on request does (on_stop hooks run)."""
        if self.runtime is not None:
            self.runtime.stop(self.wait)
            self.runtime = None
        if self.backend is not None:
            self._sent_before += self.backend.sent
            self.backend.stop()
            self.backend = None

    def restart(self, *, crash: bool = False) -> None:
        """A new app runtime and session on the same directory; ``crash``: no on_stop, as after SIGKILL."""
        if crash and self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            runtime.abandon()
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- feeding it --------------------------------------------------------------------
    def say(self, text: str | None, *, sender: str = "15551230001", group: str | None = None, wait: bool = True,
            **extra: Any) -> MessageUpsert:
        """An incoming message from ``sender`` (in ``group`` when given), delivered by the simulated
        session exactly as ``botvisor simulate`` does; returns it once every handler has finished.
        ``extra``: the simulate operation's other arguments (``quote``, ``mentions``, ``media``, ...);
        ``wait=False`` returns at once (then ``settle()`` waits), to have several chats in flight."""
        args = {"from": sender, **({"text": text} if text is not None else {}), **extra}
        if group:
            args["group"] = group
        return self.simulate("message", wait=wait, **args)

    def simulate(self, kind: str = "message", *, wait: bool = True, **args: Any) -> Any:
        """Inject any kind the simulated session models (``reaction``, ``edit``, ``revoke``, ``receipt``,
        ``call``, ``group``, ``presence``, ...; see `botvisor simulate`); returns the event."""
        with self._lock:
            assert self.backend is not None, "the app is not running"
            before = len(self.events)
            worker_commands.run(self.backend, "simulate", {"kind": kind, **args})
            injected = self.events[before] if len(self.events) > before else None
        if wait:
            self.settle()
        return injected

    def feed(self, event: Any) -> None:
        """Any event (a MessageUpsert, a ConnectionUpdate, ...), as the session would deliver it."""
        self._session_event(event)
        self.settle()

    def connection(self, connection: str = "open", **fields: Any) -> None:
        self.feed(ConnectionUpdate(connection, **fields))  # type: ignore[arg-type]

    def advance(self, seconds: float) -> None:
        """Move the app's clock forward (dialog timeouts, ctx.now(), typing)."""
        self.clock.offset += seconds

    def settle(self, timeout: float | None = None) -> None:
        """Wait until every handler started so far has finished (bounded)."""
        assert self.runtime is not None, "the app is not running"
        if not self.runtime.wait_idle(timeout if timeout is not None else self.wait):
            raise AssertionError(f"the app's handlers did not finish within {timeout or self.wait} s")

    # -- reading what it did -----------------------------------------------------------
    @property
    def sent(self) -> list[dict[str, Any]]:
        """What the session sent for the app, oldest first, across restarts: plain dicts with ``op``
        (send, send_media, react, ...), ``to``, ``text``/..., ``message_id``."""
        current = self.backend.sent if self.backend is not None else []
        return self._sent_before + list(current)

    def replies(self, chat: str | None = None) -> list[str]:
        """The texts the app sent (to ``chat`` only, when given)."""
        wanted = _jid(chat) if chat else None
        return [s["text"] for s in self.sent if s["op"] == "send" and (wanted is None or s["to"] == wanted)]

    # -- plumbing ----------------------------------------------------------------------
    def _session_event(self, data: Any) -> None:
        self.events.append(data)
        if self.runtime is not None:
            self.runtime.deliver(data)

    def _app_event(self, data: Any) -> None:
        if isinstance(data, ErrorEvent):
            self.errors.append(data)

    def _call(self, name: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self.backend is None:
                future.set_exception(OperationError(name, "the app is stopped"))
                return future
            record: dict[str, Any] = {"op": name, **{k: v for k, v in args.items() if k != QUOTE_IF_KNOWN}}
            try:
                record["result"] = run_for_app(self.backend, name, args)
            except CommandError as exc:
                record["error"] = str(exc)
                future.set_exception(OperationError(name, str(exc)))
            else:
                future.set_result(record["result"])
            self.calls.append(record)
        return future
