"""The Supervisor: one single-threaded loop that keeps the fleet alive.

One ``zmq.Poller`` waits on everything at once: the events SUB socket (worker traffic), the
tap XPUB (subscriptions), the control ROUTER (operators), the commands ROUTER (worker
replies), the signal wakeup fd, and every worker's exit sentinel. A dead worker is noticed
the moment its sentinel fires, with no polling interval. Signal handlers do nothing but wake
the loop (the wakeup fd carries the signal number); the loop dispatches.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import socket
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import zmq

from protocol import (
    SUPERVISOR_BOT,
    ContainerState,
    Notice,
    ProtocolError,
    StateChange,
    check_topic,
    decode,
    encode,
    exit_codes,
)
from protocol.control import Reply, Request, decode_reply, decode_request, encode_reply, encode_request, error
from protocol.signing import SIGNATURE_BYTES, new_secret, verify
from protocol.topics import WELCOME, split

from . import curve, health
from .config import Config, ConfigError, load_config
from .container import BotContainer
from .manager import BotManager
from .process import WorkerProcess, stop_forkserver
from .systemd import Notifier
from .timers import Timer, Timers
from worker.spec import WorkerSpec

log = logging.getLogger("botvisor.supervisor")

#: messages handled per socket per loop pass, so one busy socket cannot starve the others
BATCH = 2000
TAP_HWM = 100_000


class AlreadyRunning(RuntimeError):
    pass


class Supervisor:
    """Runs the fleet described by a Config until SIGTERM/SIGINT (or ``request_shutdown``)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = config.supervisor.server_name
        self.pid = os.getpid()
        self.timers = Timers()
        self.manager = BotManager(self, self.server)
        self.secrets: dict[str, bytes] = {}
        self.stats: Counter[str] = Counter()
        self.notifier = Notifier.from_env()
        self.shutting_down = False
        self.started_at = time.time()
        self._sentinels: dict[int, BotContainer] = {}
        self._pending: dict[str, tuple[Timer, Callable[[Reply], None]]] = {}
        self._notice_seq = 0
        self._lock_fd: int | None = None
        self._ready = False
        #: extra work on each loop pass and at shutdown (metrics, watchdog); set by run()
        self.control_commands: dict[str, Callable[[Supervisor, Request, Callable[[Reply], None]], Any]] = {}

    # -- setup ---------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        run_dir = self.config.run_dir
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        # One supervisor per run_dir: a second one would unlink and steal the ipc sockets.
        fd = os.open(run_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(f"another supervisor (pid {holder or '?'}) already runs in {run_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(self.pid).encode(), 0)
        self._lock_fd = fd

    def _bind(self) -> None:
        self.context = zmq.Context()
        cfg = self.config
        self._auth = curve.start_authenticator(self.context, cfg)  # None unless tcp:// needs CURVE
        self.events = self.context.socket(zmq.SUB)
        self.events.setsockopt(zmq.RCVHWM, 200_000)
        self.events.setsockopt(zmq.MAXMSGSIZE, 4 * 1024 * 1024)
        self.events.setsockopt(zmq.SUBSCRIBE, b"")
        self.events.bind(cfg.endpoint("events"))
        self.tap = self.context.socket(zmq.XPUB)
        self.tap.setsockopt(zmq.SNDHWM, TAP_HWM)
        self.tap.setsockopt(zmq.XPUB_NODROP, 1)  # a full tap queue raises, so drops are counted
        self.tap.setsockopt(zmq.LINGER, 0)
        self.tap.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)  # a tap can tell it is connected
        curve.secure_server(self.tap, cfg, "tap")
        self.tap.bind(cfg.endpoint("tap"))
        self.control = self.context.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.MAXMSGSIZE, 4 * 1024 * 1024)
        self.control.setsockopt(zmq.LINGER, 0)
        curve.secure_server(self.control, cfg, "control")
        self.control.bind(cfg.endpoint("control"))
        self.commands = self.context.socket(zmq.ROUTER)
        self.commands.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted worker takes over its identity
        self.commands.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an absent worker is an error, not a silent drop
        self.commands.setsockopt(zmq.MAXMSGSIZE, 4 * 1024 * 1024)
        self.commands.setsockopt(zmq.LINGER, 0)
        self.commands.bind(cfg.endpoint("commands"))
        for endpoint in (cfg.endpoint(r) for r in ("events", "tap", "control", "commands")):
            if endpoint.startswith("ipc://"):
                os.chmod(endpoint[len("ipc://"):], 0o600)
        self._signal_r, signal_w = socket.socketpair()
        self._signal_w = signal_w
        signal_w.setblocking(False)
        self._signal_r.setblocking(False)
        self.poller = zmq.Poller()
        for sock in (self.events, self.tap, self.control, self.commands):
            self.poller.register(sock, zmq.POLLIN)
        self._signal_fd = self._signal_r.fileno()  # zmq.Poller reports plain sockets by fd
        self.poller.register(self._signal_fd, zmq.POLLIN)

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._signal_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)  # the wakeup fd does the work

    # -- Runtime (what containers call) ----------------------------------------------------
    def spawn(self, container: BotContainer) -> WorkerProcess:
        bot = container.bot
        secret = new_secret()
        self.secrets[bot.id] = secret
        spec = WorkerSpec(
            server_name=self.server, bot=bot, bot_dir=self.config.bot_dir(bot.id),
            events_endpoint=self.config.endpoint("events"), commands_endpoint=self.config.endpoint("commands"),
            secret=secret, supervisor_pid=self.pid, log_dir=self.config.log_dir,
            log_max_bytes=self.config.supervisor.log_max_bytes, log_backups=self.config.supervisor.log_backups,
        )
        process = WorkerProcess(spec)
        process.start()
        return process

    def watch(self, container: BotContainer) -> None:
        sentinel = container.process.sentinel
        self._sentinels[sentinel] = container
        self.poller.register(sentinel, zmq.POLLIN)

    def unwatch(self, container: BotContainer) -> None:
        sentinel = container.process.sentinel
        if self._sentinels.pop(sentinel, None) is not None:
            self.poller.unregister(sentinel)

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

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_later(delay, callback)

    # -- the fleet -------------------------------------------------------------------------
    def fleet_summary(self) -> str:
        counts = Counter(c.state.value for c in self.manager)
        parts = [f"{counts.get(s.value, 0)} {s.value}" for s in (ContainerState.RUNNING, ContainerState.BACKOFF,
                                                                   ContainerState.FAILED)]
        others = sum(n for s, n in counts.items() if s not in ("running", "backoff", "failed"))
        return ", ".join(parts) + (f", {others} other" if others else "")

    def _start_fleet(self) -> None:
        interval = self.config.supervisor.start_interval
        autostart = [bot for bot in self.config.bots if bot.autostart]
        for bot in self.config.bots:
            self.manager.create_bot_container(bot.id, bot)
        for i, bot in enumerate(autostart):
            container = self.manager.get_bot_container(bot.id)
            if i == 0 or interval <= 0:
                container.start()
            else:
                self.timers.call_later(i * interval, container.start)
        last = max(0.0, (len(autostart) - 1) * interval)
        self.timers.call_later(last, self._on_fleet_started)

    def _on_fleet_started(self) -> None:
        self._ready = True
        self.notifier.ready(self.fleet_summary())
        log.info("fleet started: %s", self.fleet_summary())

    def notice(self, level: str, text: str) -> None:
        getattr(log, level if level in ("info", "warning", "error") else "info")(text)
        self._notice_seq += 1
        self._to_tap(*encode(Notice(self.server, SUPERVISOR_BOT, self.pid, self._notice_seq, time.time(), level, text)))

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        self._prepare_run_dir()
        self._bind()
        self._install_signals()
        log.info("botvisor supervisor pid %d serving %d bot(s) as %r", self.pid, len(self.config.bots), self.server)
        self._start_fleet()
        self._schedule_health_check()
        try:
            while not (self.shutting_down and not self._sentinels):
                self._loop_once()
        finally:
            self._close()
        log.info("supervisor stopped")
        return exit_codes.OK

    def _loop_once(self) -> None:
        now = time.monotonic()
        deadline = self.timers.next_deadline()
        watchdog = self.notifier.watchdog_due(now)
        if watchdog is not None:
            deadline = watchdog if deadline is None else min(deadline, watchdog)
        timeout = 1000 if deadline is None else max(0, int((deadline - now) * 1000) + 1)
        ready = dict(self.poller.poll(min(timeout, 1000)))
        if self._signal_fd in ready:
            self._on_signals()
        if self.events in ready:
            self._on_events()
        if self.tap in ready:
            self._drain(self.tap)
        if self.control in ready:
            self._on_control()
        if self.commands in ready:
            self._on_worker_replies()
        for fd in [fd for fd in ready if isinstance(fd, int) and fd in self._sentinels]:
            container = self._sentinels[fd]
            container.on_exit(container.process.exitcode)
        self.timers.run_due()

    def _schedule_health_check(self) -> None:
        interval = health.check_interval([c.bot.stale_after for c in self.manager])

        def check() -> None:
            now = time.monotonic()
            for container in self.manager:
                container.check_health(now)
            self._schedule_health_check()

        self.timers.call_later(interval, check)

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

    def request_shutdown(self, reason: str) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        log.info("shutting down (%s): stopping %d worker(s)", reason, len(self._sentinels))
        self.notifier.stopping()
        for container in self.manager:
            container.stop(f"supervisor shutting down ({reason})")

    def _close(self) -> None:
        for container in self.manager:  # normally none is left; never leave one behind
            if container.process is not None:
                container.process.signal_tree(signal.SIGKILL)
        stop_forkserver()
        signal.set_wakeup_fd(-1)
        for sock in (self.events, self.tap, self.control, self.commands):
            sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        self.context.term()
        self.notifier.close()

    # -- worker traffic ------------------------------------------------------------------
    def _on_events(self) -> None:
        for _ in range(BATCH):
            try:
                frames = self.events.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            self._on_worker_message(frames)

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
        if container is None or secret is None or not verify(secret, topic, payload, signature):
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
        self._to_tap(topic, payload)

    def _reject(self, kind: str, why: str) -> None:
        self.stats[f"rejected_{kind}"] += 1
        self.stats["rejected"] += 1
        if self.stats["rejected"] <= 10 or self.stats["rejected"] % 1000 == 0:
            log.warning("dropped a message on the events endpoint (%d so far): %s", self.stats["rejected"], why)

    def _to_tap(self, topic: bytes, payload: bytes) -> None:
        try:
            self.tap.send_multipart([topic, payload], zmq.NOBLOCK)
        except zmq.Again:
            self.stats["tap_dropped"] += 1
            if self.stats["tap_dropped"] in (1, 10, 100) or self.stats["tap_dropped"] % 10000 == 0:
                log.warning("a tap is too slow: %d message(s) dropped for taps so far", self.stats["tap_dropped"])

    @staticmethod
    def _drain(sock: zmq.Socket) -> None:
        for _ in range(BATCH):
            try:
                sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    # -- commands to workers ---------------------------------------------------------------
    def call_worker(self, bot_id: str, command: str, args: dict[str, Any], on_reply: Callable[[Reply], None],
                    timeout: float | None = None) -> None:
        """Ask bot ``bot_id``'s worker to run ``command``; ``on_reply`` gets exactly one Reply."""
        request_id = uuid.uuid4().hex
        container = self.manager.find(bot_id)
        if container is None:
            on_reply(error(request_id, f"no bot {bot_id!r} is configured"))
            return
        if container.state is not ContainerState.RUNNING:
            on_reply(error(request_id, f"bot {bot_id} is {container.state}, not running"))
            return
        try:
            self.commands.send_multipart([bot_id.encode(), encode_request(Request(request_id, command, args))],
                                         zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            reason = "its worker is not connected" if exc.errno == errno.EHOSTUNREACH else str(exc)
            on_reply(error(request_id, f"cannot reach bot {bot_id}: {reason}"))
            return
        wait = timeout if timeout is not None else self.config.supervisor.command_timeout

        def expire() -> None:
            if self._pending.pop(request_id, None) is not None:
                on_reply(error(request_id, f"bot {bot_id} did not answer {command!r} within {wait:g} s"))

        self._pending[request_id] = (self.timers.call_later(wait, expire), on_reply)

    def _on_worker_replies(self) -> None:
        for _ in range(BATCH):
            try:
                frames = self.commands.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._reject("command_reply", "malformed worker reply")
                continue
            try:
                reply = decode_reply(frames[1])
            except ProtocolError as exc:
                self._reject("command_reply", str(exc))
                continue
            pending = self._pending.pop(reply.id, None)
            if pending is not None:
                timer, on_reply = pending
                timer.cancel()
                on_reply(reply)

    # -- operators -------------------------------------------------------------------------
    def _on_control(self) -> None:
        from .commands import dispatch
        from .commands.codes import BAD_REQUEST, failure, salvage_id

        for _ in range(BATCH):
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
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
        self.notifier.reloading()
        try:
            try:
                new = load_config(self.config.path)
            except ConfigError as exc:
                self.notice("error", f"reload refused, the running fleet is unchanged: {exc}")
                return False
            fixed = [name for name in ("server_name", "auth_dir", "run_dir") if
                     getattr(new.supervisor, name) != getattr(self.config.supervisor, name)]
            if new.endpoints != self.config.endpoints:
                fixed.append("endpoints")
            if fixed:
                self.notice("error", f"reload refused, the running fleet is unchanged: {', '.join(fixed)} "
                                     "can only change with a restart of botvisor")
                return False
            self._apply(new)
            return True
        finally:
            self.notifier.ready(self.fleet_summary())

    def _apply(self, new: Config) -> None:
        old_bots = {bot.id: bot for bot in self.config.bots}
        new_bots = {bot.id: bot for bot in new.bots}
        self.config = new
        added = [b for b in new_bots if b not in old_bots]
        removed = [b for b in old_bots if b not in new_bots]
        changed = [b for b in new_bots if b in old_bots and new_bots[b] != old_bots[b]]
        for bot_id in removed:
            container = self.manager.get_bot_container(bot_id)
            container.stop("removed from the configuration")
            self._forget_when_stopped(container)
        for bot_id in changed:
            container = self.manager.get_bot_container(bot_id)
            container.update_config(new_bots[bot_id])
            if container.state in (ContainerState.INITIALIZING, ContainerState.RUNNING, ContainerState.STOPPING):
                container.restart("configuration changed")
        for bot_id in added:
            container = self.manager.create_bot_container(bot_id, new_bots[bot_id])
            if new_bots[bot_id].autostart:
                container.start()
        self.notice("info", f"reloaded {new.path}: {len(added)} added, {len(removed)} removed, "
                            f"{len(changed)} changed, {len(new_bots) - len(added) - len(changed)} untouched")

    def _forget_when_stopped(self, container: BotContainer) -> None:
        def check(event: Any) -> None:
            if container.state is ContainerState.STOPPED and self.manager.find(container.bot.id) is container:
                self.manager.remove_bot_container(container.bot.id)
                self.secrets.pop(container.bot.id, None)

        if container.state is ContainerState.STOPPED:
            check(None)
        else:
            container.on("state", check)
