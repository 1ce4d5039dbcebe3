"""The supervisor's side of a cluster: which bots are ours, and never one without its lease.

The loop (arbiter.py) calls in at five points: ``local`` (the shard's view of a config),
``gate`` (may this container start now?), ``may_run`` (checked again at spawn), ``on_state`` (a
bot stopped: hand it over if it left us) and ``on_wakeup`` (the keeper has results). The policy,
stated once: a worker of ours runs only while this shard's view of its lease is live, i.e.
until ``sent + lease_ttl - stop_margin``, where ``sent`` is when the last successful acquiring or
renewing statement left this host. ``lapse_grace`` before that the worker gets SIGTERM; at it,
SIGKILL. A lease the database says we lost is ended with SIGKILL at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from protocol import ContainerState
from protocol.cluster_config import ShardUnknown, resolve_shard
from protocol.config import Config, ConfigError

from .keeper import Acquired, LeaseKeeper, Lost, Released, Renewed, Trouble
from .sharding import local_config

if TYPE_CHECKING:
    from ..arbiter import Supervisor
    from ..container import BotContainer
    from ..timers import Timer

log = logging.getLogger("botvisor.cluster")
#: [cluster] keys a reload may change (the rest need a restart of the shard)
LIVE_KEYS = ("shards", "peer_control", "peer_tap")
#: seconds between looks for a statement stuck on a dead network
STUCK_CHECK_S = 0.25
#: seconds a shutting-down shard spends handing its bots over
CLOSE_S = 20.0
#: the backstop acts only when the loop has not run for this long (it is wedged)
WEDGED_S = 1.0


class LeaseNotHeld(RuntimeError):
    pass


class ClusterMember:
    def __init__(self, supervisor: Supervisor, config: Config) -> None:
        assert config.cluster is not None
        self.supervisor = supervisor
        self.settings = config.cluster
        try:
            self.shard = resolve_shard(self.settings)
        except ShardUnknown as exc:
            raise ConfigError(config.path, "cluster.shard", str(exc)) from None
        dsn = self.settings.dsn()
        if dsn is None:
            raise ConfigError(config.path, "cluster.database", "a cluster needs its PostgreSQL DSN here or in "
                                                               "$BOTVISOR_DATABASE")
        try:
            import psycopg  # noqa: F401  (the keeper's driver; imported here to fail at start, not later)
        except ImportError:
            raise ConfigError(config.path, "cluster", "a cluster needs the PostgreSQL driver: "
                                                      "pip install 'botvisor[cluster]'") from None
        # a new incarnation never inherits its predecessor's leases: it waits for them to expire
        self.owner = f"{self.shard}/{uuid.uuid4().hex[:12]}"
        self.keeper = LeaseKeeper(self.settings, dsn, supervisor.server, self.owner, self.shard,
                                  bot_dir=lambda bot: self.supervisor.config.bot_dir(bot))
        #: bot -> (token, monotonic deadline of our view of the lease)
        self.held: dict[str, tuple[int, float]] = {}
        #: bots asked to start that wait for their lease
        self.pending: set[str] = set()
        self._lapse_timer: Timer | None = None
        self._stuck_limit = max(1.0, min(self.settings.renew_interval, self.settings.lease_ttl / 4))
        #: bot -> its worker's pid (= its process group), for the backstop thread
        self.pids: dict[str, int] = {}
        self.loop_seen = time.monotonic()
        self._backstop = threading.Thread(target=self._enforce, name="botvisor-lease-backstop", daemon=True)
        self._closing = threading.Event()
        #: the forkserver's preload is fixed once: neonize's if any bot of the fleet may come here with it
        self._fleet_neonize = any(bot.backend == "neonize" for bot in config.bots)

    # -- the shard's view ------------------------------------------------------------------
    def local(self, config: Config) -> Config:
        """``config`` with only this shard's bots; ConfigError if it changes what needs a restart."""
        new = config.cluster
        if new is None:
            raise ConfigError(config.path, "cluster", "a running shard cannot leave its cluster: restart it")
        fixed = [f.name for f in dataclasses.fields(new)
                 if f.name not in LIVE_KEYS and getattr(new, f.name) != getattr(self.settings, f.name)]
        if fixed:
            raise ConfigError(config.path, "cluster", f"{', '.join(fixed)} can only change with a restart")
        if self.shard >= new.shards:
            raise ConfigError(config.path, "cluster.shards", f"this is shard {self.shard}: scale the shards down "
                                                             "after lowering shards, not before")
        return local_config(config, self.shard)  # settings follow in after_reload, once it is applied

    def fd(self) -> int:
        return self.keeper.wake_r.fileno()

    def start(self) -> None:
        log.info("shard %d of %d, lease owner %s", self.shard, self.settings.shards, self.owner)
        self._warm_up()
        self.keeper.start()
        self._backstop.start()
        self.supervisor.timers.call_later(STUCK_CHECK_S, self._check_stuck)

    def _warm_up(self) -> None:
        """Start the forkserver now, not at this shard's first spawn: a shard that gains its first
        bot in a handover (a new shard) would otherwise add the forkserver's boot to its downtime."""
        from multiprocess import forkserver

        from ..process import _main_module_hidden, worker_context

        context = worker_context(neonize=self._fleet_neonize)
        if context.get_start_method() == "forkserver":
            with _main_module_hidden():
                forkserver.ensure_running()

    def close(self) -> None:
        self._closing.set()
        for bot in list(self.held):  # every worker has ended by now: leave each bot ready to move
            self.keeper.hand_over(bot)
        self.held.clear()
        if not self.keeper.close(CLOSE_S):
            log.warning("the lease keeper did not finish in %g s; unreleased leases expire on their own", CLOSE_S)

    # -- gates -----------------------------------------------------------------------------
    def _live(self, bot: str, now: float | None = None) -> bool:
        held = self.held.get(bot)
        return held is not None and (now or time.monotonic()) < held[1] - self.settings.lapse_grace

    def gate(self, container: BotContainer) -> bool:
        """True: start now. False: it starts once its lease is ours."""
        bot = container.bot.id
        if self._live(bot):
            return True
        self.pending.add(bot)
        self.keeper.want(self.pending | set(self.held))
        return False

    def may_run(self, bot: str) -> None:
        if not self._live(bot):
            raise LeaseNotHeld(f"shard {self.shard} does not hold the lease of bot {bot!r}")

    def on_state(self, container: BotContainer) -> None:
        bot = container.bot.id
        if container.process is not None and container.process.pid:
            self.pids[bot] = container.process.pid
        else:
            self.pids.pop(bot, None)
        if container.state is ContainerState.STOPPED and bot in self.held and not self._ours(bot):
            self._hand_over(bot)

    def after_reload(self) -> None:
        """The new file is applied: take its settings; bots that left and are not running: hand them over now."""
        assert self.supervisor.config.cluster is not None
        self.settings = self.supervisor.config.cluster
        for bot in list(self.held):
            container = self.supervisor.manager.find(bot)
            if not self._ours(bot) and (container is None or container.state is ContainerState.STOPPED):
                self._hand_over(bot)
        self.pending = {bot for bot in self.pending if self._ours(bot)}
        self.keeper.want(self.pending | set(self.held))

    def _ours(self, bot: str) -> bool:
        return not self.supervisor.shutting_down and any(b.id == bot for b in self.supervisor.config.bots)

    def _hand_over(self, bot: str) -> None:
        self.held.pop(bot, None)
        self.pending.discard(bot)
        self.keeper.hand_over(bot)

    # -- results from the keeper -------------------------------------------------------------
    def on_wakeup(self) -> None:
        try:
            while self.keeper.wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while not self.keeper.results.empty():
            self._on_result(self.keeper.results.get_nowait())
        self._schedule_lapse()

    def _on_result(self, result: Any) -> None:
        ttl, margin = self.settings.lease_ttl, self.settings.stop_margin
        match result:
            case Acquired(bot=bot, token=token, sent=sent):
                if not self._ours(bot):
                    self.keeper.hand_over(bot)  # it left us while we were taking it
                    return
                self.held[bot] = (token, sent + ttl - margin)
                level = "warning" if result.stale else "info"
                self.supervisor.notice(level, f"{bot}: lease {token} taken by shard {self.shard}; {result.choice}")
                self._start_if_pending(bot)
            case Renewed(bots=bots, sent=sent):
                for bot in bots:
                    if bot in self.held:
                        self.held[bot] = (self.held[bot][0], sent + ttl - margin)
                        self._start_if_pending(bot)
            case Lost(bot=bot):
                if bot in self.held:
                    token, _ = self.held.pop(bot)
                    self._end(bot, f"lease {token} lost: the database no longer gives it to this shard", kill=True)
            case Released(bot=bot, token=token):
                if result.error:
                    self.supervisor.notice("error", f"{bot}: lease {token} handover: {result.error}")
                else:
                    self.supervisor.notice("info", f"{bot}: handed over (lease {token} released, "
                                                   f"{result.files} file(s) stored, {result.seconds * 1000:.0f} ms)")
            case Trouble(text=text):
                self.supervisor.notice("warning", f"shard {self.shard}: {text}")

    def _start_if_pending(self, bot: str) -> None:
        """A bot asked to start, whose lease is now live: start it (else a renewal will)."""
        container = self.supervisor.manager.find(bot)
        if bot in self.pending and container is not None and self._live(bot):
            self.pending.discard(bot)
            container.start()

    def _end(self, bot: str, reason: str, kill: bool) -> None:
        """Stop the bot's worker (SIGKILL now when ``kill``); it starts again once the lease is back."""
        container = self.supervisor.manager.find(bot)
        self.keeper.drop(bot)
        if container is None:
            return
        self.pending.add(bot)
        self.keeper.want(self.pending | set(self.held))
        if kill and container.process is not None:
            container.process.signal_tree(signal.SIGKILL)
        container.stop(reason)

    # -- deadlines ---------------------------------------------------------------------------
    def _schedule_lapse(self) -> None:
        if self._lapse_timer is not None:
            self._lapse_timer.cancel()
            self._lapse_timer = None
        if not self.held:
            return
        first = min(deadline for _token, deadline in self.held.values()) - self.settings.lapse_grace
        self._lapse_timer = self.supervisor.timers.call_later(max(0.0, first - time.monotonic()), self._lapse)

    def _lapse(self) -> None:
        self._lapse_timer = None
        now = time.monotonic()
        for bot, (token, deadline) in list(self.held.items()):
            if now < deadline - self.settings.lapse_grace:
                continue
            self.held.pop(bot)
            self._end(bot, f"lease {token} not renewed: stopping {deadline - now:.1f} s before this shard's view "
                           f"of it ends (the database is unreachable)", kill=False)
            self.supervisor.timers.call_later(max(0.0, deadline - now), lambda bot=bot: self._kill(bot))
        self._schedule_lapse()

    def _kill(self, bot: str) -> None:
        container = self.supervisor.manager.find(bot)
        if container is not None and container.process is not None and not self._live(bot):
            log.warning("bot %s: its lease ended and the worker is still alive: SIGKILL", bot)
            container.process.signal_tree(signal.SIGKILL)

    def _check_stuck(self) -> None:
        self.loop_seen = time.monotonic()
        since = self.keeper.busy_since
        if since is not None and time.monotonic() - since > self._stuck_limit:
            log.warning("a lease statement has been waiting %.1f s: breaking the connection",
                        time.monotonic() - since)
            self.keeper.interrupt()
        if not self.supervisor.shutting_down:
            self.supervisor.timers.call_later(STUCK_CHECK_S, self._check_stuck)

    def _enforce(self) -> None:
        """The backstop, on its own thread: when the loop is wedged (so its lapse timers cannot fire)
        and a lease's deadline has passed, SIGKILL the bot's worker group from here. The deadlines
        it reads are the last the loop saw, so a wedged loop only makes them earlier, never later."""
        while not self._closing.wait(STUCK_CHECK_S):
            now = time.monotonic()
            if now - self.loop_seen < WEDGED_S:
                continue
            for bot, (_token, deadline) in list(self.held.items()):
                pid = self.pids.get(bot)
                if pid and now >= deadline:
                    try:
                        os.killpg(pid, signal.SIGKILL)  # workers lead their own process group
                        log.error("bot %s: the loop is wedged and its lease ended: killed its worker %d", bot, pid)
                    except (ProcessLookupError, PermissionError):
                        pass
                    self.pids.pop(bot, None)

    def lease_info(self, bot: str) -> dict[str, Any] | None:
        held = self.held.get(bot)
        if held is None:
            return {"shard": self.shard, "lease": None, "waiting": bot in self.pending}
        return {"shard": self.shard, "lease": held[0], "lease_left": round(held[1] - time.monotonic(), 3)}
