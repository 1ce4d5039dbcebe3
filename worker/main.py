"""A worker process: one bot, one WhatsApp session, one single-threaded main loop.

The loop polls, with one ``zmq.Poller``: the command socket, the backend's wakeup fd, the
signal wakeup fd and the supervisor's pidfd, with a timeout that ends at the next due time
(heartbeat or backend work). Heartbeats are sent by this loop and only by it: a heartbeat is
proof that the loop came round, so a worker whose bot code deadlocks the loop goes stale and
is replaced (docs/supervision.md).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any, Callable

import zmq

from protocol import BotStatus, ErrorEvent, exit_codes
from protocol.control import decode_request, encode_reply, ok
from protocol.control import error as error_reply
from protocol.errors import ProtocolError

from . import ban
from . import commands as worker_commands
from .beats import next_beat_after
from .backends.base import Backend, BackendContext, load_backend
from .botdir import PRIVATE_UMASK, lock_bot_dir, prepare_bot_dir
from .bus import EventBus
from .errors import CommandError, WorkerExit
from .lifeline import detach_session, set_title, watch_supervisor
from .logs import configure_logging, flush_captured
from .priority import lower_priority
from .privileges import become_bot_user
from .offload import Pending
from .outbox import Outbox
from .ratelimit import TokenBucket
from .recovery import check_worker_start
from .spec import WorkerSpec
from .start_gate import HEAVY_START, StartGate

VERSION = "0.1.0"
log = logging.getLogger("botvisor.worker")


def worker_entry(spec: WorkerSpec) -> None:
    """The multiprocess target: run the bot, end the process with the contract's exit code."""
    raise SystemExit(run_worker(spec))


def run_worker(spec: WorkerSpec) -> int:
    detach_session()
    set_title(f"botvisor worker {spec.server_name}/{spec.bot_id}")
    lower_priority(spec.bot.nice)  # after detach_session: its new session is what gets weighted
    os.umask(PRIVATE_UMASK)  # whatever this process creates (neonize's store too) is 0600
    supervisor_fd = watch_supervisor(spec.supervisor_pid)
    signal_r, signal_w = socket.socketpair()
    signal_w.setblocking(False)
    signal.set_wakeup_fd(signal_w.fileno(), warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # the wakeup fd carries the signal to the loop
    configure_logging(spec.bot_id, spec.bot.log_level, spec.log_dir, spec.log_max_bytes, spec.log_backups)
    context = zmq.Context()
    bus = EventBus(context, spec.events_endpoint, server=spec.server_name, bot=spec.bot_id, secret=spec.secret,
                   backend=spec.bot.backend, heartbeat_interval=spec.bot.heartbeat_interval)
    loop: WorkerLoop | None = None
    code = exit_codes.CRASH
    try:
        bus.wait_for_subscriber(spec.subscribe_timeout)
        bus.hello(VERSION)
        loop = WorkerLoop(spec, context, bus, signal_r, supervisor_fd)
        code = loop.run()
    except Exception:
        if loop is None or not loop.hard_exit:
            raise
        log.exception("the worker failed")  # and ends with the crash code below
    finally:
        bus.close()
        context.term()
        flush_captured()
    if loop is not None and loop.hard_exit:
        # neonize's Go call runs on a non-daemon thread and its exit hook calls the blocking
        # stop(): a normal interpreter exit could hang up to 60 s. The bye is out; end here.
        os._exit(code)
    return code


class WorkerLoop:
    def __init__(self, spec: WorkerSpec, context: zmq.Context, bus: EventBus, signal_sock: socket.socket,
                 supervisor_fd: int | None) -> None:
        self.spec, self.bus = spec, bus
        self.signal_sock = signal_sock
        self.supervisor_fd = supervisor_fd
        self.commands = context.socket(zmq.DEALER)
        self.commands.setsockopt(zmq.IDENTITY, spec.bot_id.encode())
        self.commands.setsockopt(zmq.LINGER, 500)
        self.commands.connect(spec.commands_endpoint)
        self.backend: Backend | None = None
        self.stop_reason: str | None = None
        #: the fleet's start gate, for a backend whose start is heavy (opened as the supervisor's
        #: user: the run dir is not the bot user's)
        self.gate: StartGate | None = None
        if spec.start_gate is not None and spec.bot.backend in HEAVY_START:
            try:
                self.gate = StartGate(spec.start_gate, spec.start_slots, spec.bot_id)
            except OSError as exc:  # the bot matters more than the queue: start without it
                log.warning("no start gate (%s): loading without waiting for a slot", exc)
        self.app: Any = None  # worker.app.slot.AppSlot when the bot has an app (docs/apps.md)

    @property
    def hard_exit(self) -> bool:
        # an app's handler threads may be blocked for good; the bye is out by then
        return self.backend is not None and (self.backend.hard_exit or self.app is not None)

    def run(self) -> int:
        try:
            return self._run()
        except WorkerExit as exc:
            log.error("%s: %s", exc.code, exc.message)
            ban.record(self.spec.bot_dir, exc)  # a ban outlives this worker (worker/ban.py)
            self.bus.event(ErrorEvent(code=exc.code, message=exc.message, fatal=exc.exit_code == exit_codes.FATAL,
                                      status=exc.status, expires_at=exc.expires_at, file=exc.file))
            self.bus.bye(exc.code, exc.exit_code)
            return exc.exit_code
        finally:
            if self.app is not None:
                self.app.close()
            if self.backend is not None:
                self.backend.stop()
            self.commands.close()

    def _run(self) -> int:
        spec = self.spec
        become_bot_user(spec, self.commands)  # per-bot user/group: leave root before touching the bot dir
        prepare_bot_dir(spec.bot_dir, auth_root=spec.bot_dir.parent.parent)
        self._lock_fd = lock_bot_dir(spec.bot_dir, spec.supervisor_pid)
        check_worker_start(spec.bot_dir, spec.bot, self.bus.event)  # corrupt store: restore or exit 78
        ban.check(spec.bot_dir)  # still banned: end at once, as the ban said
        if self.gate is not None and not self._take_start_slot():
            self.bus.bye(self.stop_reason, exit_codes.OK)  # told to stop while waiting its turn
            return exit_codes.OK
        ctx = BackendContext(bot=spec.bot, bot_dir=spec.bot_dir, emit=self._emit,
                             log=logging.getLogger(f"botvisor.backend.{spec.bot.backend}"))
        self.backend = backend = load_backend(spec.bot.backend)(ctx)
        backend.outbox = outbox = Outbox.for_bot_dir(backend, TokenBucket.per_minute(spec.bot.messages_per_minute),
                                                     spec.bot_dir, self._emit, max_pending=spec.bot.outbox_max,
                                                     sync=spec.bot.outbox_sync)
        poller = zmq.Poller()
        poller.register(self.commands, zmq.POLLIN)
        signal_fd = self.signal_sock.fileno()  # zmq.Poller reports plain sockets by fd
        poller.register(signal_fd, zmq.POLLIN)
        if self.supervisor_fd is not None:
            poller.register(self.supervisor_fd, zmq.POLLIN)
        wake_fd = backend.wakeup_fd()
        if wake_fd is not None:
            poller.register(wake_fd, zmq.POLLIN)
        io_fd = backend.io.fd  # the I/O thread's finished network calls (worker/offload.py)
        poller.register(io_fd, zmq.POLLIN)
        app_fd = self._start_app(backend, poller)
        app_due: float | None = None

        interval, phase = spec.bot.heartbeat_interval, spec.beat_phase
        now = time.monotonic()
        backend.start(now)
        if self.gate is not None:  # loaded, its first dial under way (network, not CPU): the next one's turn
            self.gate.release()
            self.gate = None
        next_beat = now
        backend_due: float | None = now
        while self.stop_reason is None:
            now = time.monotonic()
            if backend_due is not None and now >= backend_due:
                backend_due = backend.poll(now)
                now = time.monotonic()
            outbox_due = outbox.flush(now)  # rate-limited sends whose turn has come
            if self.app is not None:
                app_due = self.app.check(now)  # a stuck app ends the worker (crash): it is replaced
            if now >= next_beat:
                self.bus.heartbeat(backend.status, backend.connection_attempts)
                self.bus.drain_subscriptions()
                next_beat = next_beat_after(now, interval, phase)
            wake_at = min(t for t in (next_beat, backend_due, outbox_due, app_due) if t is not None)
            timeout_ms = max(0, int((wake_at - now) * 1000) + 1)
            if self.app is not None:
                self.app.flush()  # the app's thread is woken as this loop goes to wait (worker/app/mailbox.py)
            ready = dict(poller.poll(timeout_ms))
            if signal_fd in ready:
                self._on_signals()
            if self.supervisor_fd is not None and self.supervisor_fd in ready:
                log.error("the supervisor is gone; exiting")
                os._exit(exit_codes.CRASH)
            if self.commands in ready:
                self._on_commands(lambda raw: self._execute(backend, raw))
            if wake_fd is not None and wake_fd in ready:
                backend_due = time.monotonic()
            if io_fd in ready:
                backend.io.drain()  # deferred replies go out, the outbox records its sends' outcomes
            if app_fd is not None and app_fd in ready:
                self.app.drain()  # the app's operations and events
                backend_due = time.monotonic()  # a send may have queued backend work
        log.info("stopping: %s", self.stop_reason)
        if self.app is not None:
            self.app.stop(min(spec.bot.stop_timeout / 2, spec.bot.handler_timeout))
        outbox.close()  # what still waits is in the bot's directory: the next worker sends it
        backend.stop()
        self.bus.bye(self.stop_reason, exit_codes.OK)
        return exit_codes.OK

    def _take_start_slot(self) -> bool:
        """Wait for a slot of the start gate, heartbeating (status loading) meanwhile; False when
        told to stop first. The supervisor's end ends the worker, as in the loop. A command that
        comes meanwhile is answered at once that the bot is not loaded yet (run later, after an
        operator's timeout, it would surprise them)."""
        assert self.gate is not None
        if self.gate.try_take():
            return True
        slots = len(self.gate.fds)
        log.info("waiting for a start slot (%d workers load at once)", slots)
        waited_from = time.monotonic()
        taken_fd = self.gate.wait_fd()
        poller = zmq.Poller()
        for fd in (taken_fd, self.signal_sock.fileno(), self.supervisor_fd):
            if fd is not None:
                poller.register(fd, zmq.POLLIN)
        poller.register(self.commands, zmq.POLLIN)
        interval, phase = self.spec.bot.heartbeat_interval, self.spec.beat_phase
        next_beat = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self.bus.heartbeat(BotStatus.LOADING, 0)
                self.bus.drain_subscriptions()
                next_beat = next_beat_after(now, interval, phase)
            ready = dict(poller.poll(max(0, int((next_beat - now) * 1000) + 1)))
            if self.signal_sock.fileno() in ready:
                self._on_signals()
                if self.stop_reason is not None:
                    return False
            if self.supervisor_fd is not None and self.supervisor_fd in ready:
                log.error("the supervisor is gone; exiting")
                os._exit(exit_codes.CRASH)
            if self.commands in ready:
                why = (f"bot {self.spec.bot_id} is starting: it waits for its turn to load {self.spec.bot.backend} "
                       f"({slots} bots load at once); try again shortly")
                self._on_commands(lambda raw: self._refuse(raw, why))
            if taken_fd in ready:
                log.info("start slot taken after %.2f s", time.monotonic() - waited_from)
                return True

    def _refuse(self, raw: bytes, why: str) -> None:
        try:
            request = decode_request(raw)
        except ProtocolError as exc:
            log.warning("malformed command ignored: %s", exc)
            return
        self.commands.send(encode_reply(error_reply(request.id, why)))

    def _emit(self, data: Any) -> None:
        self.bus.event(data)
        if self.app is not None:
            self.app.deliver(data)

    def _start_app(self, backend: Backend, poller: zmq.Poller) -> int | None:
        """Load the bot's app on a thread, here after the fork (import errors: fatal)."""
        if not self.spec.bot.app:
            return None
        from .app.slot import AppSlot

        self.app = AppSlot(self.spec.bot, self.spec.bot_dir, backend, self.bus.event)
        poller.register(self.app.fd, zmq.POLLIN)
        return self.app.fd

    def _on_signals(self) -> None:
        try:
            data = self.signal_sock.recv(64)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.stop_reason = f"received {signal.Signals(signum).name}"

    def _on_commands(self, run: Callable[[bytes], None]) -> None:
        """Each command queued on the socket, to ``run`` (executed, or refused while waiting)."""
        while True:
            try:
                frames = self.commands.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            run(frames[-1])

    def _execute(self, backend: Backend, raw: bytes) -> None:
        """Run one command and answer it: at once, or, when the operation returned a Pending (a
        network call on the I/O thread), when that is done. Both go through ``_answer``."""
        try:
            request = decode_request(raw)
        except ProtocolError as exc:
            log.warning("malformed command ignored: %s", exc)
            return
        operation = worker_commands.OPERATIONS.get(request.command)
        if operation is None:
            known = ", ".join(sorted(worker_commands.OPERATIONS))
            self.commands.send(encode_reply(error_reply(request.id, f"unknown command {request.command!r} (known: {known})")))
            return
        try:
            result: Any = operation(backend, request.args)
        except BaseException as exc:  # noqa: BLE001 - _answer reports it or re-raises it
            self._answer(request.id, request.command, error=exc)
            return
        if isinstance(result, Pending):  # the loop goes on; the reply follows when the call is done
            result.on_done(lambda done: self._answer(request.id, request.command, done))
        else:
            self._answer(request.id, request.command, value=result)

    def _answer(self, request_id: str, command: str, done: Pending | None = None, value: Any = None,
                error: BaseException | None = None) -> None:
        if done is not None:
            value, error = done.outcome()
        if error is None:
            self.commands.send(encode_reply(ok(request_id, value)))
        elif isinstance(error, CommandError):
            self.commands.send(encode_reply(error_reply(request_id, str(error))))
        elif isinstance(error, WorkerExit):
            # e.g. logout: answer the operator first, then end the worker as the error says
            self.commands.send(encode_reply(ok(request_id, {"exiting": True, "reason": error.message})))
            raise error
        elif isinstance(error, Exception):  # a backend bug must not kill the bot: report it to the operator
            log.error("command %s failed", command, exc_info=error)
            self.commands.send(encode_reply(error_reply(request_id, f"{command} failed: "
                                                                     f"{error.__class__.__name__}: {error}")))
        else:
            raise error
