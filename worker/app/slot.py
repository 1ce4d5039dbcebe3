"""The main loop's handle on the bot's app: loaded on a thread, so heartbeats never wait for it.

Importing the framework and the app's own code can take a while (asyncio, a database driver,
the app's module-level set-up); the worker's main loop must keep beating meanwhile. The app is
loaded on a thread of its own and handed to the main loop through the bridge; events that arrive
before it is ready are kept and delivered in order once it is. An import that fails, or takes
more than twice ``handler_timeout``, ends the worker as fatal (the bot is ``failed``, with why).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from protocol.config import BotConfig

from ..errors import FatalBotError
from .mailbox import Mailbox

#: seconds a thread may hold the GIL while another waits for it (CPython's default: 0.005)
SWITCH_INTERVAL = 0.001
#: events kept while the app loads (a bot flooded during its import drops the oldest)
EARLY_EVENTS = 10_000


def _one_malloc_arena() -> None:
    """glibc gives each new thread its own malloc arena (megabytes of RSS once used); a worker's app
    thread shares the main one instead (M_ARENA_MAX = 1), as for a single-threaded process."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


class AppSlot:
    def __init__(self, bot: BotConfig, bot_dir: Path, backend: Any, emit: Callable[[Any], None]) -> None:
        self.bot, self.bot_dir, self.backend, self._emit = bot, bot_dir, backend, emit
        #: the app's operations and events for the main loop (the app's thread holds its wakeups)
        self.bridge = Mailbox()
        self._main_thread = threading.get_ident()
        self.app: Any = None  # worker.app.host.WorkerApp once loaded
        self._early: deque[Any] = deque(maxlen=EARLY_EVENTS)
        self._since = time.monotonic()
        self._limit = 2 * bot.handler_timeout
        _one_malloc_arena()
        # the main loop and the app's thread hand the GIL to each other for every operation; a
        # thread waiting for it waits up to one switch interval (5 ms by default) behind a busy one
        sys.setswitchinterval(SWITCH_INTERVAL)
        threading.Thread(target=self._load, name="app-loader", daemon=True).start()

    @property
    def fd(self) -> int:
        return self.bridge.fd

    def _load(self) -> None:  # on the loader thread
        try:
            from .host import WorkerApp

            app = WorkerApp(self.bot, self.bot_dir, self.backend, self._emit, self.bridge)
        except BaseException as exc:  # noqa: BLE001 - reported by the main loop, which ends the worker
            self.bridge.post(functools.partial(self._failed, exc))
            return
        # Each side wakes the other only when it is about to wait itself (worker/app/mailbox.py):
        # the main loop flushes the app's inbox before it polls, the app's loop the bridge before
        # it selects.
        app.runtime.inbox.hold_for(self._main_thread)
        app.runtime.before_wait = self.bridge.flush
        self.bridge.post(lambda: self._loaded(app))
        self.bridge.hold_for(threading.get_ident())
        app.runtime.run_here()  # this thread becomes the app's loop: one thread, one malloc arena

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, FatalBotError):
            raise exc
        raise FatalBotError("app-import-failed", f"app {self.bot.app!r} cannot be loaded: "
                            f"{type(exc).__name__}: {exc}") from exc

    def _loaded(self, app: Any) -> None:
        self.app = app
        app.watch_start()
        while self._early:
            app.deliver(self._early.popleft())

    # -- the main loop's calls ---------------------------------------------------------
    def deliver(self, data: Any) -> None:
        if self.app is not None:
            self.app.deliver(data)
        else:
            self._early.append(data)

    def drain(self) -> None:
        self.bridge.drain()

    def flush(self) -> None:
        """The main loop is about to poll: wake the app's loop for what this turn gave it."""
        app = self.app
        if app is not None:
            app.runtime.inbox.flush()

    def check(self, now: float) -> float:
        if self.app is not None:
            return self.app.check(now)
        if now - self._since > self._limit:
            raise FatalBotError("app-import-failed", f"importing app {self.bot.app!r} took over {self._limit:g} s "
                                "(twice handler_timeout)")
        return now + min(self._limit / 4, 1.0)

    def stop(self, timeout: float) -> None:
        if self.app is not None:
            self.app.stop(timeout)

    def close(self) -> None:
        """On the way out: stop the app's loop thread (its blocked handlers die with the process)."""
        if self.app is not None:
            loop = self.app.runtime.loop
            if not loop.is_closed():  # stop() closed it when the app's thread ended
                loop.call_soon_threadsafe(loop.stop)
