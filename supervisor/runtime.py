"""What the containers call on the Supervisor (container.Runtime), and the fleet-wide acts:
its start, notices, the health looks, shutdown and reload.

A mixin of the Supervisor (supervisor/arbiter.py), whose loop, sockets and timers these use.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any, Callable

from protocol import SUPERVISOR_BOT, ContainerState, Notice, StateChange, encode
from protocol.config import ConfigError, load_config
from protocol.signing import new_secret
from worker.beats import beat_groups
from worker.spec import WorkerSpec
from worker.start_gate import DIRECTORY as START_GATE
from worker.start_gate import HEAVY_START, FleetHold, default_slots

from . import health
from .appcheck import broken_apps, changed_apps
from .container import BotContainer
from .process import WorkerProcess, worker_context
from .reload import ReloadPlan, apply_plan, plan_reload
from .timers import Timer

log = logging.getLogger("botvisor.supervisor")

#: seconds after its last heavy worker is started that a fleet's start gate opens at the latest
#: (a worker that never says hello is the supervisor's to judge, not the gate's to wait for)
HOLD_MAX_S = 10.0
#: how often the held gate looks whether every heavy worker has said hello
HOLD_CHECK_S = 0.05


class FleetRuntime:
    """The Supervisor's fleet half (see the module docstring)."""

    def start_gate(self, container: BotContainer) -> bool:
        """False holds a start back: in a cluster, until the bot's lease is this shard's."""
        return self.cluster is None or self.cluster.gate(container)

    def spawn(self, container: BotContainer) -> WorkerProcess:
        bot = container.bot
        if self.cluster is not None:
            self.cluster.may_run(bot.id)  # never a worker without its lease, whatever asked for it
        secret = new_secret()
        self.secrets[bot.id] = secret
        if bot.user is not None or bot.group is not None:
            self._hand_over_bot_dir(bot)
        process = WorkerProcess(self.worker_spec(bot, secret))
        process.start()
        return process

    def worker_spec(self, bot: Any, secret: bytes) -> WorkerSpec:
        """What a new worker of ``bot`` is told (pickled to it, never in argv or env)."""
        return WorkerSpec(
            server_name=self.server, bot=bot, bot_dir=self.config.bot_dir(bot.id),
            events_endpoint=self.config.endpoint("events"), commands_endpoint=self.config.endpoint("commands"),
            secret=secret, supervisor_pid=self.pid, log_dir=self.config.log_dir,
            log_max_bytes=self.config.supervisor.log_max_bytes, log_backups=self.config.supervisor.log_backups,
            subscribe_timeout=bot.stale_after, start_gate=self.config.run_dir / START_GATE,
            start_slots=self.config.supervisor.start_concurrency or default_slots(),
            beat_groups=beat_groups(len(self.config.bots)),  # this shard's fleet, in a cluster
        )

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
        self._expect_traffic()
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
        # a timer per start, the container's own (a stop, or a reload that removes the bot,
        # cancels it); the loop runs due timers in slices (arbiter.TIMERS_SLICE_S), so the first
        # workers' hellos are taken while the rest are forked, start_interval 0 or not
        for i, bot in enumerate(autostart):
            container = self.manager.get_bot_container(bot.id)
            if i == 0 and interval > 0:
                container.start()  # the forkserver starts with the first: the stagger counts from after it
            else:
                container.start_later(i * interval)
        last = max(0.0, (len(autostart) - 1) * interval)
        # made after the starts, so at the same due time they run after the last of them
        self._hold_start_gate([bot.id for bot in autostart if bot.backend in HEAVY_START], last)
        self.timers.call_later(last, self._on_fleet_started)

    def _hold_start_gate(self, heavy: list[str], last: float) -> None:
        """Keep the start gate shut while the fleet's heavy workers are forked and say hello
        (worker/start_gate.py), at most HOLD_MAX_S after the last of them is started (``last``
        seconds from now). A fleet with no more heavy bots than slots has nothing to queue."""
        slots = self.config.supervisor.start_concurrency or default_slots()
        if len(heavy) <= slots or self.cluster is not None:
            # in a [cluster] a bot starts once its lease is this shard's, maybe much later: the
            # hold would wait out its deadline for bots that are not coming
            return
        try:
            hold = FleetHold(self.config.run_dir / START_GATE, slots)
        except OSError as exc:  # the workers open the gate themselves; they only start less orderly
            log.warning("could not hold the start gate for the fleet's start: %s", exc)
            return

        def watch() -> None:  # after the last start: every heavy worker is forked
            deadline = time.monotonic() + HOLD_MAX_S

            def check() -> None:
                # not yet running: forked and silent, or crashed at once (then the deadline
                # opens the gate)
                waiting = sum(1 for b in heavy if (c := self.manager.find(b)) is not None
                              and c.state is not ContainerState.RUNNING)
                if waiting and time.monotonic() < deadline and not self.shutting_down:
                    self.timers.call_later(HOLD_CHECK_S, check)
                    return
                hold.release()
                log.info("start gate open: %d heavy worker(s) started%s", len(heavy),
                         f", {waiting} without a hello yet" if waiting else ", every one said hello")

            check()

        self.timers.call_later(last, watch)

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

    def request_shutdown(self, reason: str) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        log.info("shutting down (%s): stopping %d worker(s)", reason, len(self._sentinels))
        self.notifier.stopping()
        for container in self.manager:
            container.stop(f"supervisor shutting down ({reason})")

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
