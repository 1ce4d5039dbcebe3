"""The Supervisor: one single-threaded loop that keeps the fleet alive.

Its two other halves: the worker traffic (checked and republished) in relay.py, what the
containers call and the fleet-wide acts (start, health looks, shutdown, reload) in runtime.py.

One ``zmq.Poller`` waits on everything at once: the events SUB socket (worker traffic), the
tap XPUB (subscriptions), the control ROUTER (operators), the commands ROUTER (worker
replies), the signal wakeup fd, and every worker's exit sentinel. A dead worker is noticed
the moment its sentinel fires, with no polling interval. Signal handlers do nothing but wake
the loop (the wakeup fd carries the signal number); the loop dispatches.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from typing import Any, Callable

import zmq

from protocol import ProtocolError, curve, exit_codes
from protocol.config import Config
from protocol.control import Reply, decode_request, encode_reply
from protocol.signing import Verifier

from .calls import WorkerCalls
from .container import BotContainer
from .manager import BotManager
from .outage import OutageWatch
from .poller import Poller, queued
from .process import raise_fd_limit, stop_forkserver
from .relay import EVENTS_BATCH, Relay
from .runtime import FleetRuntime
from .sockets import bind_sockets, lock_run_dir
from .systemd import WEDGE_ENV, Notifier, debug_wedge_seconds
from .timers import Timer, Timers

__all__ = ["EVENTS_BATCH", "Supervisor"]

log = logging.getLogger("botvisor.supervisor")

#: at most one pass per this many seconds while worker messages arrive faster than that: each
#: wakeup costs more than handling a message, so dense traffic is taken in batches, for at
#: most this much added latency; sparse traffic (heartbeats) is handled as it comes
COALESCE_S = 0.001
#: at most this long in due timers per pass before the loop looks at its sockets again. A fleet's
#: start is a timer per worker, and a new worker waits for its subscription before its hello:
#: ZeroMQ attaches the worker's connection, and subscribes it, only when this thread touches the
#: events socket, so forking 1,000 workers in one pass held every hello back until the last fork
#: (bench/ISSUE18-notes.md §10)
TIMERS_SLICE_S = 0.02


class Supervisor(Relay, FleetRuntime):
    """Runs the fleet described by a Config until SIGTERM/SIGINT (or ``request_shutdown``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = config.supervisor.server_name
        self.cluster: Any = None  # supervisor.cluster.member.ClusterMember when [cluster] is set
        if config.cluster is not None:
            from .cluster.member import ClusterMember

            self.cluster = ClusterMember(self, config)
            self.config = config = self.cluster.local(config)
        self.pid = os.getpid()
        #: this run of the supervisor, for clients that outlive it: in a container the pid is the
        #: same after every restart (often 1); 53 bits, so a JSON client reads it exactly
        self.instance = int.from_bytes(os.urandom(7), "big") >> 3
        self.timers = Timers()
        self.manager = BotManager(self, self.server)
        self.secrets: dict[str, bytes] = {}
        #: bot id -> the HMAC check keyed with its current worker's secret
        self._verifiers: dict[str, Verifier] = {}
        self.stats: Counter[str] = Counter()
        self.notifier = Notifier.from_env()
        self.shutting_down = False
        self.started_at = time.time()
        self._sentinels: dict[int, BotContainer] = {}
        #: pids whose bye arrived: their exit can be judged at once
        self._byes: set[int] = set()
        self.calls = WorkerCalls(self)
        self._notice_seq = 0
        #: bots removed by a reload whose workers are still stopping
        self._removing: set[str] = set()
        self._lock_fd: int | None = None
        self._ready = False
        self._last_events_at = 0.0
        #: the last pass read a full EVENTS_BATCH: more is queued, no coalescing pause
        self._events_saturated = False
        self._events_dense = False
        self._traffic_at = 0.0  # time.monotonic() of the last worker message other than a heartbeat
        #: (topic, payload) accepted in this pass, not yet republished (see _flush_tap)
        self._tap_pending: list[tuple[bytes, bytes]] = []
        self._health_timer: Timer | None = None
        # signals (and shutdown() from other threads) reach the loop as bytes on this pair
        self._signal_r, self._signal_w = socket.socketpair()
        self._signal_r.setblocking(False)
        self._signal_w.setblocking(False)
        # Containers exist before run(), so an embedding program can register listeners first.
        for bot in config.bots:
            self.manager.create_bot_container(bot.id, bot)
        #: test hook: SIGUSR1 wedges the loop this long (see supervisor.systemd.WEDGE_ENV)
        self._wedge = debug_wedge_seconds()
        self.metrics: Any = None  # supervisor.metrics.MetricsServer when [metrics] listen is set
        sup = config.supervisor
        self.outages = OutageWatch(threshold=sup.outage_bots, window=sup.outage_window)

    # -- setup ---------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        self._lock_fd = lock_run_dir(self.config.run_dir, self.pid)

    def _bind(self) -> None:
        self.context = zmq.Context()
        self._auth = curve.start_authenticator(self.context, self.config)  # None unless tcp:// needs CURVE
        self.events, self.tap, self.control, self.commands = bind_sockets(self.context, self.config)
        # the tap's send without pyzmq's Python layer above it (which only adds routing_id and
        # group, for SERVER and RADIO sockets): two calls per republished message
        self._tap_send = super(zmq.Socket, self.tap).send
        self._handlers = {self.events: self._on_events, self.tap: self._on_tap_subscriptions,
                          self.control: self._on_control, self.commands: self._on_worker_replies}
        self.poller = Poller()
        # in this order each pass: a request and a worker's reply before the events' batch
        for sock in (self.control, self.commands, self.tap, self.events):
            self.poller.add_socket(sock)
        self._signal_fd = self._signal_r.fileno()
        self.poller.add_fd(self._signal_fd)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded in a thread: the host program owns signals; use shutdown()
        signal.set_wakeup_fd(self._signal_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) + ((signal.SIGUSR1,) if self._wedge else ()):
            signal.signal(sig, lambda *_: None)  # the wakeup fd does the work

    def shutdown(self) -> None:
        """Ask the loop to stop the fleet and return, from any thread (as SIGTERM would)."""
        self._signal_w.send(bytes([signal.SIGTERM]))

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        self._prepare_run_dir()
        self._bind()
        self._install_signals()
        fds = raise_fd_limit()  # a sentinel and a kept /proc file per worker; 1024 is a small default
        log.info("botvisor supervisor pid %d serving %d bot(s) as %r (fd limit %d)", self.pid, len(self.config.bots),
                 self.server, fds)
        self._start_metrics()
        self._claim_cpu_share()  # first: a cluster starts its forkserver now, in the supervisor's group
        if self.cluster is not None:
            self.poller.add_fd(self.cluster.fd())
            self.cluster.start()
        self._start_fleet()
        self._schedule_health_check()
        self._trim_memory()
        try:
            while not (self.shutting_down and not self._sentinels):
                self._loop_once()
        finally:
            self._close()
        log.info("supervisor stopped")
        return exit_codes.OK

    def _loop_once(self) -> None:
        now = time.monotonic()
        since = now - self._last_events_at
        # dense traffic (more than one message in the last pass, but not a full batch): let it
        # queue up and take it in one pass; a lone message (a heartbeat) costs no extra wakeup
        if since < COALESCE_S and self._events_dense and not self._events_saturated:
            time.sleep(COALESCE_S - since)
            now = time.monotonic()
        deadline = self.timers.next_deadline()
        watchdog = self.notifier.watchdog_due(now)
        if watchdog is not None:
            deadline = watchdog if deadline is None else min(deadline, watchdog)
        timeout = 1.0 if deadline is None else min(1.0, max(0.0, deadline - now) + 0.0005)
        ready = self.poller.poll(timeout)
        if self._signal_fd in ready.fds:
            self._guarded(self._on_signals)
        for sock in ready.sockets:
            self._guarded(self._handlers[sock])
        if self.events in ready.sockets:
            self._last_events_at = now
        for fd in [fd for fd in ready.fds if fd in self._sentinels]:
            container = self._sentinels[fd]
            self._guarded(self._await_last_words, container.process.pid, container.process.exitcode)
            self._guarded(container.on_exit, container.process.exitcode)
        if self.cluster is not None and self.cluster.fd() in ready.fds:
            self._guarded(self.cluster.on_wakeup)
        self._guarded(self.timers.run_due, TIMERS_SLICE_S)

    def _guarded(self, handler: Callable[..., Any], *args: Any) -> None:
        """Run one handler; a bug in it is logged and counted, and the fleet keeps running."""
        try:
            handler(*args)
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error in %s; the supervisor carries on",
                          getattr(handler, "__qualname__", handler))

    def _trim_memory(self) -> None:
        from .memory import TRIM_EVERY_S, trim

        trim()
        self.timers.call_later(TRIM_EVERY_S, self._trim_memory)

    def _on_signals(self) -> None:
        try:
            data = self._signal_r.recv(256)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.request_shutdown(f"received {signal.Signals(signum).name}")
            elif signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGUSR1 and self._wedge:
                log.warning("debug hook: wedging the loop for %g s (SIGUSR1, $%s)", self._wedge, WEDGE_ENV)
                time.sleep(self._wedge)  # on purpose: nothing in the loop runs, watchdog pings included

    def _start_metrics(self) -> None:
        if not self.config.metrics.listen:
            return
        from .metrics import MetricsServer

        try:
            self.metrics = MetricsServer.start(self, self.config.metrics.listen)
        except OSError as exc:  # the bots matter more than their metrics: run on without them
            self.notice("error", f"metrics endpoint {self.config.metrics.listen} not started: {exc}")

    def _claim_cpu_share(self) -> None:
        """Before the first worker (and the forkserver) starts: see supervisor/cgroups.py."""
        from . import cgroups

        try:
            cgroups.setup(self.server)
        except (cgroups.Unavailable, OSError) as exc:
            self.notice("warning", f"no CPU share for the supervisor ({exc}): under a busy fleet it has only "
                                   "the workers' nice, and relays and answers late")

    def _close(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
        for container in self.manager:  # normally none is left; never leave one behind
            if container.process is not None:
                container.process.signal_tree(signal.SIGKILL)
        if self.cluster is not None:
            self.cluster.close()
        stop_forkserver()
        from . import cgroups

        cgroups.release()
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(-1)
        for sock in (self.events, self.tap, self.control, self.commands):
            sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        self.context.term()
        self.poller.close()
        self.notifier.close()

    # -- commands to workers ---------------------------------------------------------------
    def call_worker(self, bot_id: str, command: str, args: dict[str, Any], on_reply: Callable[[Reply], None],
                    timeout: float | None = None) -> None:
        """Ask bot ``bot_id``'s worker to run ``command``; ``on_reply`` gets exactly one Reply."""
        self.calls.call(bot_id, command, args, on_reply, timeout)

    def _on_worker_replies(self) -> None:
        self.calls.on_replies()

    # -- operators -------------------------------------------------------------------------
    def _on_control(self) -> None:
        from protocol.codes import BAD_REQUEST, failure, salvage_id

        from .commands import dispatch

        for frames in queued(self.control):
            identity, envelope, raw = frames[0], frames[1:-1], frames[-1]

            def answer(reply: Reply, identity: bytes = identity, envelope: list[bytes] = envelope) -> None:
                try:
                    self.control.send_multipart([identity, *envelope, encode_reply(reply)], zmq.NOBLOCK)
                except zmq.ZMQError as exc:
                    log.warning("could not answer a control client: %s", exc)

            try:
                request = decode_request(raw)
            except ProtocolError as exc:
                answer(failure(salvage_id(raw), BAD_REQUEST, f"malformed request: {exc}"))
                continue
            dispatch(self, request, answer)
