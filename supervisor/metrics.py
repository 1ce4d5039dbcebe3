"""The optional Prometheus endpoint: ``[metrics] listen = "127.0.0.1:9464"``.

Nothing is counted for Prometheus in the supervisor's loop: a custom Collector reads the live
containers when a scrape comes in, in prometheus_client's HTTP server thread. It copies each
container's fields into a plain ``BotSample`` first and builds the metrics from those copies.
Under the GIL each attribute read is atomic; the per-type event Counter is copied in one C-level
dict merge, retried in the rare case that the loop changed it mid-copy. Memory and CPU come from
psutil, read by pid in this thread (never through the loop's ``WorkerProcess``).

The loop's only part is the lag probe: a timer every LAG_PROBE_INTERVAL seconds that records
how late it fired. A wedged loop shows as a lag that keeps growing at every scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from protocol import ContainerState, EventType
from protocol.config import split_listen

log = logging.getLogger("botvisor.metrics")

#: seconds between two runs of the loop-lag probe
LAG_PROBE_INTERVAL = 0.5


class LoopLagProbe:
    """How late the supervisor's loop runs a timer that was due: its scheduling lag."""

    def __init__(self, call_later: Callable[[float, Callable[[], None]], Any], interval: float = LAG_PROBE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.call_later, self.interval, self.clock = call_later, interval, clock
        self.last_lag = 0.0
        self._due: float | None = None

    def start(self) -> None:
        self._due = self.clock() + self.interval
        self.call_later(self.interval, self._fire)

    def _fire(self) -> None:
        self.last_lag = max(0.0, self.clock() - (self._due or 0.0))
        self.start()

    def current(self) -> float:
        """The last lag measured or, when the probe is overdue (a wedged loop), how overdue it is."""
        due = self._due
        overdue = self.clock() - due if due is not None else 0.0
        return max(self.last_lag, overdue)


@dataclass(frozen=True, slots=True)
class BotSample:
    """One container's numbers, copied out of the loop's objects at scrape time."""

    bot: str
    state: ContainerState
    healthy: bool
    pid: int | None
    restarts: int
    heartbeat_age: float | None
    events: dict[str, int]
    events_lost: int
    connection_attempts: int


def sample(container: Any) -> BotSample:
    for _ in range(5):
        try:
            events = dict(container.events_total)
            break
        except RuntimeError:  # the loop changed the Counter during the copy
            continue
    else:
        events = {}
    process = container.process
    return BotSample(
        bot=container.bot.id, state=container.state, healthy=container.is_container_healthy(),
        pid=(process.pid or None) if process is not None else None, restarts=container.restarts,
        heartbeat_age=container.heartbeat_age(), events=events, events_lost=container.events_lost,
        connection_attempts=container.connection_attempts,
    )


class FleetCollector:
    """Every metric botvisor exports, built per scrape from the live supervisor."""

    def __init__(self, supervisor: Any, probe: LoopLagProbe | None) -> None:
        self.supervisor = supervisor
        self.probe = probe
        self._processes: dict[int, psutil.Process] = {}

    def collect(self) -> Iterator[Metric]:
        samples = [sample(c) for c in list(self.supervisor.manager)]
        up = GaugeMetricFamily("botvisor_bot_up", "1 when the bot's worker is running and its heartbeat is fresh",
                               labels=["bot"])
        state = GaugeMetricFamily("botvisor_bot_state", "1 for the container's current state, 0 for the others",
                                  labels=["bot", "state"])
        restarts = CounterMetricFamily("botvisor_bot_restarts", "Restarts of the bot's worker under the policy",
                                       labels=["bot"])
        age = GaugeMetricFamily("botvisor_bot_heartbeat_age_seconds",
                                "Seconds since the worker's loop was last heard from (absent without a worker)",
                                labels=["bot"])
        events = CounterMetricFamily("botvisor_bot_events", "Events received from the bot, by type",
                                     labels=["bot", "type"])
        lost = CounterMetricFamily("botvisor_bot_events_lost", "Messages missing from the worker's seq",
                                   labels=["bot"])
        attempts = GaugeMetricFamily("botvisor_bot_connection_attempts",
                                     "WhatsApp connection attempts since the last open connection", labels=["bot"])
        rss = GaugeMetricFamily("botvisor_bot_resident_memory_bytes", "Resident memory of the bot's worker",
                                labels=["bot"])
        cpu = CounterMetricFamily("botvisor_bot_cpu_seconds", "User and system CPU time of the current worker",
                                  labels=["bot"])
        by_state = dict.fromkeys(ContainerState, 0)
        live_pids = set()
        for s in samples:
            by_state[s.state] += 1
            up.add_metric([s.bot], 1.0 if s.healthy else 0.0)
            for each in ContainerState:
                state.add_metric([s.bot, each.value], 1.0 if s.state is each else 0.0)
            restarts.add_metric([s.bot], s.restarts)
            if s.heartbeat_age is not None:
                age.add_metric([s.bot], s.heartbeat_age)
            for kind in EventType:
                events.add_metric([s.bot, kind.value], s.events.get(kind.value, 0))
            lost.add_metric([s.bot], s.events_lost)
            attempts.add_metric([s.bot], s.connection_attempts)
            if s.pid is not None:
                live_pids.add(s.pid)
                usage = self._usage(s.pid)
                if usage is not None:
                    rss.add_metric([s.bot], usage[0])
                    cpu.add_metric([s.bot], usage[1])
        for pid in set(self._processes) - live_pids:
            self._processes.pop(pid, None)  # scrapes may run concurrently (one thread each)
        fleet = GaugeMetricFamily("botvisor_bots", "Bot containers by state", labels=["state"])
        for each, count in by_state.items():
            fleet.add_metric([each.value], count)
        yield from (up, state, restarts, age, events, lost, attempts, rss, cpu, fleet)
        yield from self._supervisor_metrics()

    def _supervisor_metrics(self) -> Iterator[Metric]:
        if self.probe is not None:
            yield GaugeMetricFamily("botvisor_supervisor_loop_lag_seconds",
                                    "How late the supervisor's loop ran its last due timer (grows while wedged)",
                                    value=self.probe.current())
        stats = self.supervisor.stats
        yield CounterMetricFamily("botvisor_supervisor_messages_rejected",
                                  "Messages dropped on the events endpoint (bad signature, malformed, ...)",
                                  value=stats.get("rejected", 0))
        yield CounterMetricFamily("botvisor_tap_messages_dropped", "Messages not delivered to a too slow tap",
                                  value=stats.get("tap_dropped", 0))
        outages = getattr(self.supervisor, "outages", None)
        if outages is not None:
            bots = GaugeMetricFamily("botvisor_fleet_outage_bots", "Bots hit by a fleet-wide outage (the same "
                                     "WhatsApp failure on many bots within outage_window), by code and status",
                                     labels=["code", "status"])
            for outage in outages.active(time.monotonic()):
                bots.add_metric([outage.code, str(outage.status or "")], len(outage.bots))
            yield bots

    def _usage(self, pid: int) -> tuple[int, float] | None:
        """(RSS bytes, CPU seconds) of ``pid``, or None when it is gone."""
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                return process.memory_info().rss, times.user + times.system
        except psutil.Error:
            self._processes.pop(pid, None)
            return None


class MetricsServer:
    """prometheus_client's HTTP server (a daemon thread) serving a registry of our own."""

    def __init__(self, httpd: Any, thread: Any, listen: str) -> None:
        self.httpd, self.thread, self.listen = httpd, thread, listen

    @classmethod
    def start(cls, supervisor: Any, listen: str) -> MetricsServer:
        """Start serving; raises OSError when the address cannot be bound. Call from the loop."""
        host, port = split_listen(listen)
        probe = LoopLagProbe(supervisor.call_later)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector(supervisor, probe))  # type: ignore[arg-type]
        ProcessCollector(namespace="botvisor_supervisor", registry=registry)  # the supervisor's own rss, cpu, fds
        httpd, thread = start_http_server(port, host, registry=registry)
        probe.start()
        log.info("metrics on http://%s/metrics", listen)
        return cls(httpd, thread, listen)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2.0)
