"""A loaded app in its worker: operations and events through the bridge, stuck checks, stopping.

The app's threads never touch the backend or the bus: every operation and event is a closure
on the bridge (a Mailbox, worker/app/mailbox.py), run by the main loop, so the backend and the
ZeroMQ sockets stay single-threaded. An operation from a coroutine is ``submit``: its outcome
goes straight back into the app loop's inbox, with no thread-safe Future in between.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from pathlib import Path
from typing import Any, Callable

from protocol.config import BotConfig
from protocol.events import ErrorEvent

from ..errors import BotCrash, FatalBotError
from ..offload import Pending
from .loader import AppLoadError, load_app, parse_app
from .ops import run_for_app
from .mailbox import Mailbox
from .runtime import AppRuntime


def operation_error(name: str, exc: BaseException) -> Exception:
    from botvisor.errors import OperationError

    return OperationError(name, str(exc))


def _settle_pending(settle: Callable[[Any, BaseException | None], None], name: str, done: Pending) -> None:
    value, error = done.outcome()
    if error is None:
        settle(value, None)
    elif isinstance(error, Exception):
        settle(None, operation_error(name, error))
    else:
        raise error


def settle_future(future: concurrent.futures.Future[Any], name: str, done: Pending) -> None:
    value, error = done.outcome()
    if error is None:
        future.set_result(value)
    elif isinstance(error, Exception):
        future.set_exception(operation_error(name, error))
    else:
        raise error


class WorkerApp:
    """An app running in this worker: the main loop's handle on it."""

    def __init__(self, bot: BotConfig, bot_dir: Path, backend: Any, emit: Callable[[Any], None],
                 bridge: Mailbox) -> None:
        self.bridge = bridge
        self.backend, self._emit = backend, emit
        ref = parse_app(bot.app or "", bot.app_root or ".")
        try:
            app = load_app(ref)
        except AppLoadError as exc:
            raise FatalBotError("app-import-failed", f"app {bot.app!r} cannot be loaded: {exc}",
                                file=exc.file) from None
        self.runtime = AppRuntime(app, bot_id=bot.id, app_config=bot.app_config, bot_dir=bot_dir,
                                  handler_timeout=bot.handler_timeout, call=self.call, emit=self.emit,
                                  log=logging.getLogger(f"botvisor.app.{bot.id}"), submit=self.submit)
        self.check_every = min(bot.handler_timeout / 4, 1.0)
        self._next_check = 0.0

    def watch_start(self) -> None:
        """Have the main loop end the worker if the app's on_start fails (the runtime runs already)."""
        self.runtime.started.add_done_callback(lambda f: self.bridge.post(self._check_started))

    def _check_started(self) -> None:
        exc = self.runtime.started.exception()
        if exc is not None:
            raise FatalBotError("app-start-failed", f"the app's on_start failed: {type(exc).__name__}: {exc}")

    # -- from the app's thread ---------------------------------------------------------
    def call(self, name: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = run_for_app(self.backend, name, args)
            except Exception as exc:  # noqa: BLE001 - a backend bug goes to the handler, not the loop
                future.set_exception(operation_error(name, exc))
                return
            if isinstance(result, Pending):  # a network call on the I/O thread: settled when it is done
                result.on_done(lambda done: settle_future(future, name, done))
            else:
                future.set_result(result)

        self.bridge.post(run)
        return future

    def submit(self, name: str, args: dict[str, Any], settle: Callable[[Any, BaseException | None], None]) -> None:
        """``call`` for a coroutine: ``settle(value, error)`` runs on the main loop when it is done."""

        def run() -> None:
            try:
                result = run_for_app(self.backend, name, args)
            except Exception as exc:  # noqa: BLE001 - a backend bug goes to the handler, not the loop
                settle(None, operation_error(name, exc))
                return
            if isinstance(result, Pending):  # a network call on the I/O thread: settled when it is done
                result.on_done(lambda done: _settle_pending(settle, name, done))
            else:
                settle(result, None)

        self.bridge.post(run)

    def emit(self, data: Any) -> None:
        self.bridge.post(lambda: self._emit(data))

    # -- from the main loop ------------------------------------------------------------
    def deliver(self, data: Any) -> None:
        if isinstance(data, ErrorEvent) and data.code in ("handler-error", "handler-timeout"):
            return  # the app's own failures go to on_error, not back into it as events
        self.runtime.deliver(data)

    def check(self, now: float) -> float:
        """Raise BotCrash when the app is stuck; return when to check next."""
        if now >= self._next_check:
            reason = self.runtime.stuck(now)
            if reason is not None:
                raise BotCrash("app-stuck", reason)
            self._next_check = now + self.check_every
        return self._next_check

    def stop(self, timeout: float) -> None:
        """on_stop hooks may still act as the bot: keep running the bridge while they do."""
        deadline = time.monotonic() + timeout
        stopper = concurrent.futures.ThreadPoolExecutor(1)
        done = stopper.submit(self.runtime.stop, timeout)
        while not done.done() and time.monotonic() < deadline + 1.5:
            self.bridge.drain()
            self.runtime.inbox.flush()  # the hooks' results (this thread holds the inbox's wakeups)
            time.sleep(0.005)
        stopper.shutdown(wait=False)
