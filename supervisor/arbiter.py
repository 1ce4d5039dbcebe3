"""The Supervisor: one single-threaded loop that keeps the fleet alive.

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

from protocol import (
    SUPERVISOR_BOT,
    Bye,
    ContainerState,
    ErrorEvent,
    Event,
    Notice,
    ProtocolError,
    StateChange,
    check_topic,
    curve,
    decode,
    encode,
    exit_codes,
)
from protocol.config import Config, ConfigError, load_config
from protocol.control import Reply, decode_request, encode_reply
from protocol.signing import SIGNATURE_BYTES, Verifier, new_secret
from protocol.topics import split
from worker.spec import WorkerSpec

from . import health
from .calls import WorkerCalls
from .container import BotContainer
from .manager import BotManager
from .outage import OutageWatch
from .poller import Poller, queued
from .process import WorkerProcess, stop_forkserver, worker_context
from .appcheck import broken_apps, changed_apps
from .reload import ReloadPlan, apply_plan, plan_reload
from .sockets import bind_sockets, lock_run_dir, publish_lossy
from .systemd import WEDGE_ENV, Notifier, debug_wedge_seconds
from .timers import Timer, Timers

log = logging.getLogger("botvisor.supervisor")

#: at most one pass per this many seconds while worker messages arrive faster than that: each
#: wakeup costs more than handling a message, so dense traffic is taken in batches, for at
#: most this much added latency; sparse traffic (heartbeats) is handled as it comes
COALESCE_S = 0.001
#: worker messages read per pass; then timers, control requests (a ``status`` under load) and
#: exits get their turn: at ~15 µs a message, 256 is under 4 ms
EVENTS_BATCH = 256
#: accepted messages republished together (see _flush_tap), at most this many at a time
TAP_BATCH = 64
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
#: how long an exit waits for the worker's last messages (its error and bye) still in flight
LAST_WORDS_S = 0.25


class Supervisor:
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
        self._handlers = {self.events: self._on_events, self.tap: self._on_tap_subscriptions,
                          self.control: self._on_control, self.commands: self._on_worker_replies}
        self.poller = Poller()
        for sock in (self.events, self.tap, self.control, self.commands):
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

    # -- Runtime (what containers call) ----------------------------------------------------
    def start_gate(self, container: BotContainer) -> bool:
        """False holds a start back: in a cluster, until the bot's lease is this shard's."""
        return self.cluster is None or self.cluster.gate(container)

    def spawn(self, container: BotContainer) -> WorkerProcess:
        bot = container.bot
        if self.cluster is not None:
            self.cluster.may_run(bot.id)  # never a worker without its lease, whatever asked for it
        secret = new_secret()
        self.secrets[bot.id] = secret
        spec = WorkerSpec(
            server_name=self.server, bot=bot, bot_dir=self.config.bot_dir(bot.id),
            events_endpoint=self.config.endpoint("events"), commands_endpoint=self.config.endpoint("commands"),
            secret=secret, supervisor_pid=self.pid, log_dir=self.config.log_dir,
            log_max_bytes=self.config.supervisor.log_max_bytes, log_backups=self.config.supervisor.log_backups,
            subscribe_timeout=bot.stale_after,
        )
        if bot.user is not None or bot.group is not None:
            self._hand_over_bot_dir(bot)
        process = WorkerProcess(spec)
        process.start()
        return process

    def _hand_over_bot_dir(self, bot: Any) -> None:
        """A bot with its own user/group owns its directory (the worker drops to it after fork)."""
        from worker.botdir import chown_bot_dir, resolve_identity
        from worker.errors import WorkerExit

        if os.geteuid() != 0:
            return
        try:
            identity = resolve_identity(bot.user, bot.group)
            if identity is not None:
                chown_bot_dir(self.config.bot_dir(bot.id), *identity)
        except (WorkerExit, OSError) as exc:  # the worker meets the same problem and exits 78 with it
            self.notice("error", f"{bot.id}: cannot hand its directory over: {exc}")

    def watch(self, container: BotContainer) -> None:
        sentinel = container.process.sentinel
        self._sentinels[sentinel] = container
        self.poller.add_fd(sentinel)
        due = container.stale_at()  # a new worker's hello deadline may come before the next look
        if self._health_timer is not None and due is not None and due < self._health_timer.when:
            self._schedule_health_check()

    def unwatch(self, container: BotContainer) -> None:
        sentinel = container.process.sentinel
        if self._sentinels.pop(sentinel, None) is not None:
            self.poller.remove_fd(sentinel)

    def publish_state(self, container: BotContainer, previous: ContainerState) -> None:
        message = StateChange(
            server=self.server, bot=container.bot.id, pid=container.process.pid if container.process else 0,
            seq=container.state_seq, ts=time.time(), state=container.state, previous=previous,
            reason=container.reason, next_restart_at=container.next_restart_at if container.state is ContainerState.BACKOFF else None,
            last_exit=container.last_exit, restarts=container.restarts,
        )
        self._to_tap(*encode(message))
        if self._ready:
            self.notifier.status(self.fleet_summary())
        if self.cluster is not None:
            self.cluster.on_state(container)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_later(delay, callback)

    # -- the fleet -------------------------------------------------------------------------
    def fleet_summary(self) -> str:
        """One line for systemd's STATUS=: "2 running, 1 backoff, 0 failed[, 1 stopped ...]"."""
        counts = Counter(c.state for c in self.manager)
        always = (ContainerState.RUNNING, ContainerState.BACKOFF, ContainerState.FAILED)
        parts = [f"{counts.get(s, 0)} {s.value}" for s in always]
        parts += [f"{counts[s]} {s.value}" for s in ContainerState if s not in always and counts.get(s)]
        return ", ".join(parts)

    def _start_fleet(self) -> None:
        # fixes the forkserver's preload: neonize's dependencies only for a fleet that uses them
        worker_context(neonize=any(bot.backend == "neonize" for bot in self.config.bots),
                       apps=any(bot.app for bot in self.config.bots))
        interval = self.config.supervisor.start_interval
        autostart = [bot for bot in self.config.bots if bot.autostart]
        for i, bot in enumerate(autostart):
            container = self.manager.get_bot_container(bot.id)
            if i == 0 or interval <= 0:
                container.start()
            else:  # the container's own timer: a stop or a reload that removes the bot cancels it
                container.start_later(i * interval)
        last = max(0.0, (len(autostart) - 1) * interval)
        self.timers.call_later(last, self._on_fleet_started)

    def _on_fleet_started(self) -> None:
        if self.shutting_down:
            return  # READY=1 after STOPPING=1 would confuse systemd
        self._ready = True
        self.notifier.ready(self.fleet_summary())
        log.info("fleet started: %s", self.fleet_summary())

    def notice(self, level: str, text: str) -> None:
        getattr(log, level if level in ("info", "warning", "error") else "info")(text)
        self._to_tap(*encode(Notice(self.server, SUPERVISOR_BOT, self.pid, self._notice_seq, time.time(), level, text)))
        self._notice_seq += 1

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        self._prepare_run_dir()
        self._bind()
        self._install_signals()
        log.info("botvisor supervisor pid %d serving %d bot(s) as %r", self.pid, len(self.config.bots), self.server)
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
        self._guarded(self.timers.run_due)

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

    def _schedule_health_check(self) -> None:
        """The next look for stale workers, just past the earliest moment one can be stale."""
        if self._health_timer is not None:
            self._health_timer.cancel()
        now = time.monotonic()
        deadlines = (d for c in self.manager if (d := c.stale_at()) is not None)
        self._health_timer = self.timers.call_later(health.next_check(deadlines, now), self._check_health)

    def _check_health(self) -> None:
        self._health_timer = None
        now = time.monotonic()
        for container in self.manager:
            container.check_health(now)
        self._schedule_health_check()

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

    def request_shutdown(self, reason: str) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        log.info("shutting down (%s): stopping %d worker(s)", reason, len(self._sentinels))
        self.notifier.stopping()
        for container in self.manager:
            container.stop(f"supervisor shutting down ({reason})")

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

    # -- worker traffic ------------------------------------------------------------------
    def _on_events(self) -> None:
        handle, n = self._on_worker_message, 0
        for n, frames in enumerate(queued(self.events, EVENTS_BATCH), start=1):
            handle(frames)
        self._flush_tap()
        self._events_saturated = n == EVENTS_BATCH
        self._events_dense = n > 1
        if not self._events_saturated:  # read until empty: the next poll need not look again
            self.poller.drained(self.events)

    def _on_worker_message(self, frames: list[bytes]) -> None:
        if len(frames) != 3 or len(frames[2]) != SIGNATURE_BYTES:
            self._reject("frames", f"expected [topic, payload, signature], got {len(frames)} frame(s)")
            return
        topic, payload, signature = frames
        try:
            _server, bot_id, _rest = split(topic.decode())
        except UnicodeDecodeError:
            self._reject("topic", "topic is not UTF-8")
            return
        container = self.manager.find(bot_id)
        secret = self.secrets.get(bot_id)
        verifier = self._verifiers.get(bot_id)
        if secret is not None and (verifier is None or verifier.secret is not secret):
            verifier = self._verifiers[bot_id] = Verifier(secret)  # a new worker, a new secret
        if container is None or secret is None or not verifier(topic, payload, signature):
            self._reject("signature", f"message for bot {bot_id!r} does not carry its worker's signature")
            return
        try:
            message = decode(payload)
            check_topic(topic, message)
        except ProtocolError as exc:
            self._reject("malformed", f"bot {bot_id}: {exc}")
            return
        if message.server != self.server or not container.accepts(message):
            self.stats["stale"] += 1  # e.g. the last words of a worker already replaced
            return
        container.on_message(message)
        self._tap_pending.append((topic, payload))
        if len(self._tap_pending) >= TAP_BATCH:
            self._flush_tap()
        if type(message) is Event and type(message.data) is ErrorEvent:
            outage = self.outages.observe(bot_id, message.data, time.monotonic())
            if outage is not None:
                self.notice("error", outage)
        if type(message) is Bye:
            self._byes.add(message.pid)

    def _await_last_words(self, pid: int, exitcode: int | None) -> None:
        """A worker that exited on purpose sent its error and bye just before; the exit can be
        seen before they are read. Read them first (bounded), so the exit is judged with its reason."""
        deadline = time.monotonic() + LAST_WORDS_S
        if exitcode is not None and exitcode >= 0:  # a signal's victim says nothing
            while pid not in self._byes and (left := deadline - time.monotonic()) > 0:
                if self.events.poll(int(left * 1000) + 1):
                    self._on_events()
        self._byes.discard(pid)

    def _reject(self, kind: str, why: str) -> None:
        self.stats[f"rejected_{kind}"] += 1
        self.stats["rejected"] += 1
        if self.stats["rejected"] <= 10 or self.stats["rejected"] % 1000 == 0:
            log.warning("dropped a message on the events endpoint (%d so far): %s", self.stats["rejected"], why)

    def _to_tap(self, topic: bytes, payload: bytes) -> None:
        self._tap_pending.append((topic, payload))  # after what came before it, in order
        self._flush_tap()

    def _flush_tap(self) -> None:
        """Republish what the pass accepted, back to back: ZeroMQ wakes its I/O thread (a
        syscall) when a pipe goes from empty to non-empty, so sends spread over a pass cost a
        wakeup each, and sends in a row share one. Plain-int flags: ``send_multipart``'s
        ``SNDMORE | flags`` builds an IntFlag per frame, which cost more than the send.

        The tap has XPUB_NODROP: a full tap queue refuses the first frame (EAGAIN); that message
        is counted in tap_dropped and sent again lossy, so the taps that keep up still get it."""
        pending = self._tap_pending
        if pending:
            send = self.tap.send
            for topic, payload in pending:
                try:
                    send(topic, _SNDMORE_NOBLOCK)
                except zmq.Again:
                    self.stats["tap_dropped"] += 1
                    publish_lossy(self.tap, [topic, payload])
                    continue
                send(payload, _NOBLOCK)
            pending.clear()

    def _on_tap_subscriptions(self) -> None:
        for _frames in queued(self.tap):
            pass  # a tap (un)subscribed; XPUB hands us the notice, there is nothing to do with it

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

    # -- reload ----------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config file; apply it, or refuse it and leave the fleet as it was."""
        ready = self._ready  # before READY=1 (fleet still starting) systemd gets no RELOADING=1
        if ready:
            self.notifier.reloading()
        try:
            try:
                new = load_config(self.config.path)
                if self.cluster is not None:
                    new = self.cluster.local(new)
            except ConfigError as exc:
                self.notice("error", f"reload refused, the running fleet is unchanged: {exc}")
                return False
            plan = plan_reload(self.config, new)
            if plan.refused:
                self.notice("error", f"reload refused, the running fleet is unchanged: {plan.refused}")
                return False
            broken = broken_apps(changed_apps(self.config, new))  # imported in throw-away processes
            if broken:
                self.notice("error", f"reload refused, the running fleet is unchanged: {'; '.join(broken)}")
                return False
            self.config = new
            self._apply(plan)
            if self.cluster is not None:
                self.cluster.after_reload()
            self.notice("info", f"reloaded {new.path}: {plan.summary()}")
            return True
        finally:
            if ready:
                self.notifier.ready(self.fleet_summary())

    def _apply(self, plan: ReloadPlan) -> None:
        apply_plan(self.manager, plan, self._removing, forget=self._forget_secret)

    def _forget_secret(self, bot_id: str) -> None:
        self.secrets.pop(bot_id, None)
        self._verifiers.pop(bot_id, None)
