"""Running an app's handlers: an asyncio loop on a thread of its own, one lane per chat.

Why a thread: the worker's main loop sends the heartbeats and must come round whatever a handler
does (an HTTP call, a slow database). The app's loop runs beside it; a plain-function handler runs
on a small thread pool so it cannot block the app's loop either. Everything that touches the
session (sending, presence, ...) is handed back to the main loop through ``call`` (the worker's
operations), so the backend stays single-threaded.

Scheduling: events of one chat are handled one at a time, in arrival order (a lane per chat);
different chats proceed concurrently. Events without a chat share one lane.

Supervision: a handler past ``handler_timeout`` gets a ``handler-timeout`` error event (an async
handler is cancelled then; a plain function cannot be and runs on). A handler still running at
twice ``handler_timeout`` means the app is stuck: ``stuck()`` says so and the worker ends with
the crash code, to be replaced under the restart policy (docs/apps.md, "Supervision").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import selectors
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

from botvisor.app import Bot, Handler, matching
from botvisor.context import Context, HandlerError, Services
from botvisor.state import STATE_FILE, StateDB
from protocol.events import EVENT_OF_DATA, ErrorEvent, EventType

from .mailbox import Mailbox

#: lines of traceback an error event carries (the bot's log has all of it)
TRACEBACK_LINES = 12
TRACEBACK_CHARS = 2000
#: threads for plain-function handlers (each blocked one holds a thread)
SYNC_THREADS = 8


def freeze(value: Any) -> Any:
    """Plain data made read-only: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def _settle(result: asyncio.Future[Any], done: concurrent.futures.Future[Any]) -> None:
    if result.cancelled():
        return
    exc = done.exception()
    if exc is not None:
        result.set_exception(exc)
    else:
        result.set_result(done.result())


def _resolve(result: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if result.cancelled():
        return
    if error is not None:
        result.set_exception(error)
    else:
        result.set_result(value)


#: submit(name, args, settle): run an operation, then call settle(value, error) on any thread
Submit = Callable[[str, dict[str, Any], Callable[[Any, "BaseException | None"], None]], None]


class _WaitHookSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The app loop's selector, telling the runtime before each select whether the loop is about
    to wait (a timeout other than 0) or only looking between two busy turns."""

    def __init__(self, before_select: Callable[[bool], None]) -> None:
        super().__init__()
        self._before_select = before_select

    def select(self, timeout: float | None = None) -> Any:
        self._before_select(timeout is None or timeout > 0)
        return super().select(timeout)


def short_traceback(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines[-TRACEBACK_LINES:])
    return text[-TRACEBACK_CHARS:]


@dataclass
class Running:
    handler: str
    chat: str | None
    started: float
    timed_out: bool = False


class Clock:
    """Wall time and sleeping, as the app sees them (botvisor.testing swaps in a manual one)."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AppRuntime:
    def __init__(self, bot: Bot, *, bot_id: str, app_config: dict[str, Any] | None, bot_dir: Path | None,
                 handler_timeout: float, call: Callable[[str, dict[str, Any]], concurrent.futures.Future[Any]],
                 emit: Callable[[Any], None], log: logging.Logger, clock: Clock | None = None,
                 submit: Submit | None = None) -> None:
        self.bot, self.bot_id, self.timeout = bot, bot_id, handler_timeout
        self.emit, self.log = emit, log
        self.clock = clock or Clock()
        self.db = StateDB(bot_dir / STATE_FILE, self.clock.time) if bot_dir is not None else None
        #: events and operation results for the app's loop, from other threads (one wakeup a batch)
        self.inbox = Mailbox()
        #: called on the app's thread before each select: True when the loop is about to wait
        self.before_wait: Callable[[bool], None] | None = None
        self.loop = asyncio.SelectorEventLoop(_WaitHookSelector(self._before_select))
        self.loop.add_reader(self.inbox.fd, self.inbox.drain)
        self._submit = submit
        self.pool = concurrent.futures.ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix=f"app-{bot_id}")
        self._call = call
        self.services = Services(bot_id=bot_id, config=freeze(dict(app_config or {})), log=log, db=self.db,
                                 call=call, call_async=self._call_async, loop=self.loop, in_loop=self._in_loop, clock=self.clock.time,
                                 sleep=self.clock.sleep, op_timeout=max(handler_timeout, 1.0) * 2)
        self.running: dict[int, Running] = {}
        self._ids = itertools.count()
        self.lanes: dict[Any, deque[tuple[str, Any]]] = {}
        #: resolved when on_start hooks have run (an exception: the app failed to start)
        self.started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name=f"app-{bot_id}", daemon=True)
        self._thread_id: int | None = None
        self._pending = 0  # events handed over and not finished: the test kit waits for 0
        self._pending_lock = threading.Lock()
        self._idle = threading.Condition(self._pending_lock)

    # -- lifecycle (called from the worker's main thread) ------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start_hooks(), self.loop)

    def run_here(self) -> None:
        """Run the app's loop on the calling thread (the worker's loader thread, so one thread serves)."""
        self._thread = threading.current_thread()
        asyncio.run_coroutine_threadsafe(self._start_hooks(), self.loop)
        self._main()

    def stop(self, timeout: float) -> None:
        """Run on_stop hooks (bounded by ``timeout``), then end the app's loop."""
        if not self._thread.is_alive() or self._thread_id is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._stop_hooks(), self.loop)
        try:
            done.result(timeout)
        except (concurrent.futures.TimeoutError, Exception) as exc:
            self.log.warning("on_stop did not finish: %s", exc or "timed out")
        self.abandon()

    def abandon(self) -> None:
        """End the app's loop without its on_stop hooks (what a SIGKILL does), and free what it held."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(1.0)
        self.pool.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():  # a handler still blocking the app's thread keeps them
            self.loop.remove_reader(self.inbox.fd)
            self.loop.close()  # its selector and self-pipe: a test kit restarting an app leaked them
            self.inbox.close()
        if self.db is not None:
            self.db.close()

    def deliver(self, data: Any) -> None:
        """Hand an event to the app (any thread); it is dropped if no handler could want it."""
        event_type = EVENT_OF_DATA.get(type(data))
        if event_type is None or not self.bot.candidates(event_type, data):
            return  # no handler could want it (the bot's own messages, mostly): no trip to the app's thread
        with self._pending_lock:
            self._pending += 1
        self._post(functools.partial(self._route, str(event_type), data))

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the app's loop (from any thread), through the inbox (worker/app/mailbox.py)."""
        self.inbox.post(fn)

    def _before_select(self, waiting: bool) -> None:
        if self.before_wait is not None:
            self.before_wait(waiting)

    def _call_async(self, name: str, args: dict[str, Any]) -> asyncio.Future[Any]:
        """An operation from a coroutine: its result comes back through the inbox (batched)."""
        result: asyncio.Future[Any] = self.loop.create_future()
        if self._submit is not None:  # the worker: straight to its loop and back, no thread-safe Future
            self._submit(name, args, lambda value, error: self._post(functools.partial(_resolve, result, value,
                                                                                       error)))
            return result
        done = self._call(name, args)
        done.add_done_callback(lambda f: self._post(functools.partial(_settle, result, f)))
        return result

    def stuck(self, now: float) -> str | None:
        """Why the app is stuck (a handler running past 2 x handler_timeout), or None."""
        for run in list(self.running.values()):
            age = now - run.started
            if age > 2 * self.timeout:
                where = f" in chat {run.chat}" if run.chat else ""
                return (f"the app is stuck: handler {run.handler}{where} has run for {age:.1f} s "
                        f"(handler_timeout {self.timeout:g} s) and could not be stopped")
        return None

    def wait_idle(self, timeout: float) -> bool:
        """Block until every delivered event was handled (the test kit); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- inside the app's thread -------------------------------------------------------
    def _in_loop(self) -> bool:
        return threading.get_ident() == self._thread_id

    def _main(self) -> None:
        self._thread_id = threading.get_ident()
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _start_hooks(self) -> None:
        try:
            for hook in self.bot.start_hooks:
                ctx = Context(self.services, event_type="start")
                ok = await self._invoke(hook, ctx, None, fatal=True)
                if not ok:
                    return
            self.started.set_result(None)
        finally:
            self._ready.set()

    async def _stop_hooks(self) -> None:
        for hook in self.bot.stop_hooks:
            await self._invoke(hook, Context(self.services, event_type="stop"), None)

    def _route(self, event_type: str, data: Any) -> None:
        key = getattr(data, "chat", None) if event_type == EventType.MESSAGE_UPSERT else None
        lane = self.lanes.get(key)
        if lane is not None:
            lane.append((event_type, data))
            return
        self.lanes[key] = lane = deque([(event_type, data)])
        self.loop.create_task(self._drain(key, lane))

    async def _drain(self, key: Any, lane: deque[tuple[str, Any]]) -> None:
        await self._ready.wait()
        try:
            while lane:
                event_type, data = lane[0]
                try:
                    if self.started.done() and self.started.exception() is None:
                        await self._dispatch(event_type, data)
                except Exception:  # a runtime bug must not stop the lane
                    self.log.exception("dispatching a %s failed", event_type)
                finally:
                    lane.popleft()
                    self._finished()
        finally:
            if self.lanes.get(key) is lane:
                del self.lanes[key]

    def _spawn(self, coro: Any) -> None:
        """A task the test kit's settle() waits for too (error hooks)."""
        with self._pending_lock:
            self._pending += 1
        self.loop.create_task(coro).add_done_callback(lambda _: self._finished())

    def _finished(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending <= 0:
                self._idle.notify_all()

    async def _dispatch(self, event_type: str, data: Any) -> None:
        candidates = self.bot.candidates(event_type, data)
        if not candidates:
            return
        is_message = event_type == EventType.MESSAGE_UPSERT
        ctx = Context(self.services, event_type=event_type, event=data, message=data if is_message else None)
        chat = ctx.chat
        found = matching(candidates, ctx)
        while True:
            try:
                handler = next(found)
            except StopIteration:
                return
            except Exception as exc:  # a filter raised: the handler it guards is named
                self._report(ctx, HandlerError(type(exc).__name__, str(exc), "a filter", chat, short_traceback(exc),
                                               exc))
                return
            ctx._continue = False
            await self._invoke(handler, ctx, chat)
            if not ctx._continue:
                return

    async def _invoke(self, handler: Handler, ctx: Context, chat: str | None, fatal: bool = False) -> bool:
        token = next(self._ids)
        run = self.running[token] = Running(handler.name, chat, time.monotonic())
        if handler.is_async:
            task: asyncio.Future[Any] = self.loop.create_task(handler.fn(ctx))
        else:
            task = self.loop.run_in_executor(self.pool, handler.fn, ctx)
        # one timer per handler (cheaper than asyncio.wait's); the lane waits for the handler's real end
        timer = self.loop.call_later(self.timeout, self._overran, handler, ctx, chat, task, run, fatal)
        try:
            result = await task
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result  # a plain function that returned an awaitable (e.g. lambda ctx: ctx.reply(...))
            return not (fatal and run.timed_out)
        except asyncio.CancelledError:
            if run.timed_out and task.cancelled():
                return False  # cancelled at its timeout, already reported
            raise
        except Exception as exc:
            if fatal:
                if not self.started.done():
                    self.started.set_exception(exc)
                self.log.error("on_start hook %s failed", handler.name, exc_info=exc)
                return False
            self._report(ctx, HandlerError(type(exc).__name__, str(exc), handler.name, chat, short_traceback(exc),
                                           exc), log_exc=exc)
            return False
        finally:
            timer.cancel()
            del self.running[token]

    def _overran(self, handler: Handler, ctx: Context, chat: str | None, task: asyncio.Future[Any], run: Running,
                 fatal: bool) -> None:
        run.timed_out = True
        if fatal:
            if not self.started.done():
                self.started.set_exception(TimeoutError(
                    f"{handler.name} did not finish within handler_timeout ({self.timeout:g} s)"))
        else:
            self._timed_out(handler, ctx, chat)
        if handler.is_async:
            task.cancel()  # a plain function cannot be stopped: it runs on, holding its chat

    def _timed_out(self, handler: Handler, ctx: Context, chat: str | None) -> None:
        where = f" in chat {chat}" if chat else ""
        message = f"handler {handler.name}{where} ran past handler_timeout ({self.timeout:g} s)"
        self.log.error("%s", message)
        error = HandlerError("TimeoutError", message, handler.name, chat, "", None, code="handler-timeout")
        self.emit(ErrorEvent(code="handler-timeout", message=message, handler=handler.name, chat=chat,
                             exception="TimeoutError"))
        self._spawn(self._error_hooks(ctx, error))

    def _report(self, ctx: Context, error: HandlerError, log_exc: BaseException | None = None) -> None:
        where = f" in chat {error.chat}" if error.chat else ""
        message = f"handler {error.handler}{where} raised {error.type}: {error.message}"
        self.log.error("%s", message, exc_info=log_exc)
        self.emit(ErrorEvent(code="handler-error", message=message, handler=error.handler, chat=error.chat,
                             exception=error.type, traceback=error.traceback))
        if ctx.error is None:  # an on_error hook that fails is reported, not re-handled
            self._spawn(self._error_hooks(ctx, error))

    async def _error_hooks(self, ctx: Context, error: HandlerError) -> None:
        for hook in self.bot.error_hooks:
            hook_ctx = Context(self.services, event_type=ctx.event_type, event=ctx.event, message=ctx.message)
            hook_ctx.error = error
            await self._invoke(hook, hook_ctx, error.chat)
