"""BotContainer and BotManager, the original API, driven by a fake runtime and a fake clock."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest

from protocol import (
    BotStatus,
    ConnectionUpdate,
    CredsUpdate,
    ErrorEvent,
    Event,
    EventType,
    Heartbeat,
    Hello,
    MessageUpsert,
    exit_codes,
)
from protocol import (
    ContainerState as S,
)
from protocol.config import BotConfig
from supervisor.container import BotContainer, InvalidTransition
from supervisor.manager import BotManager, UnknownBot
from supervisor.restart import RestartPolicy

from .fakes import SIGKILL, SIGTERM, FakeClock, FakeRuntime

POLICY = RestartPolicy(initial=1.0, factor=2.0, max=8.0, jitter=0.0, reset_after=30.0, max_restarts=3,
                       restart_window=60.0)


def make(bot_id: str = "b1", **overrides) -> tuple[BotContainer, FakeRuntime, FakeClock]:
    clock = FakeClock()
    runtime = FakeRuntime(clock)
    bot = BotConfig(id=bot_id, heartbeat_interval=1.0, stop_timeout=5.0, backoff=POLICY, event_history=5,
                    **overrides)
    return BotContainer(bot, runtime, "srv", clock=clock), runtime, clock


def hello(c: BotContainer, seq: int = 0) -> None:
    c.on_message(Hello("srv", c.bot.id, c.process.pid, seq, time.time(), "simulated", 1.0))


def event(c: BotContainer, seq: int, data) -> Event:
    ev = Event("srv", c.bot.id, c.process.pid, seq, time.time(), {
        ConnectionUpdate: EventType.CONNECTION_UPDATE, MessageUpsert: EventType.MESSAGE_UPSERT,
        CredsUpdate: EventType.CREDS_UPDATE, ErrorEvent: EventType.ERROR}[type(data)], data)
    c.on_message(ev)
    return ev


def crash(c: BotContainer, runtime: FakeRuntime, code: int = exit_codes.CRASH) -> None:
    c.on_exit(code)


def test_start_spawns_and_hello_makes_it_running_and_healthy():
    c, runtime, clock = make()
    assert c.state is S.STOPPED and not c.is_container_healthy()
    c.start()
    assert c.state is S.INITIALIZING and len(runtime.spawned) == 1
    hello(c)
    assert c.state is S.RUNNING and c.is_container_healthy()
    status = c.get_status()
    assert status.container_id == "srv:b1" and status.pid == runtime.spawned[0].pid
    assert [(p, n) for _, p, n, _ in runtime.states] == [(S.STOPPED, S.INITIALIZING), (S.INITIALIZING, S.RUNNING)]


def test_a_worker_that_goes_quiet_turns_unhealthy_and_is_terminated_then_killed():
    c, runtime, clock = make()
    c.start()
    hello(c)
    clock.advance(2.9)
    c.check_health(clock())
    assert c.state is S.RUNNING, "within 3 x heartbeat_interval it is still fine"
    clock.advance(0.2)
    assert not c.is_container_healthy()
    c.check_health(clock())
    process = runtime.spawned[0]
    assert c.state is S.STOPPING and process.signals == [SIGTERM] and "no heartbeat" in c.reason
    clock.advance(0.24)
    runtime.run_timers()
    assert process.signals == [SIGTERM]
    clock.advance(0.02)
    runtime.run_timers()
    assert process.signals == [SIGTERM, SIGKILL], "a stale worker gets 0.25 s, not the whole stop_timeout"
    c.on_exit(-9)
    assert c.state is S.INITIALIZING and c.restarts == 1, "restarted at once: first of its streak"


def test_crash_streak_backs_off_exponentially_then_fails_past_the_intensity_limit():
    c, runtime, clock = make()
    c.start()
    delays = []
    for _ in range(3):
        hello(c)
        clock.advance(1.0)
        crash(c, runtime)
        if c.state is S.BACKOFF:
            delay = c.next_restart_at - time.time()
            delays.append(round(delay, 1))
            clock.advance(delay + 0.01)
            runtime.run_timers()
        assert c.state is S.INITIALIZING
    assert delays == [1.0, 2.0], "immediate, then initial, then initial x factor"
    hello(c)
    crash(c, runtime)
    assert c.state is S.FAILED and "more than 3 restarts" in c.reason
    assert len(runtime.spawned) == 4
    c.start()  # an operator's start is a fresh chance
    assert c.state is S.INITIALIZING and len(runtime.spawned) == 5


def test_a_long_healthy_run_resets_the_streak_so_the_next_restart_is_immediate():
    c, runtime, clock = make()
    c.start()
    hello(c)
    crash(c, runtime)  # 1st: immediate
    hello(c)
    crash(c, runtime)  # 2nd: backoff 1 s
    assert c.state is S.BACKOFF
    clock.advance(1.0)
    runtime.run_timers()
    hello(c)
    clock.advance(31.0)  # healthy longer than reset_after
    crash(c, runtime)
    assert c.state is S.INITIALIZING, "streak reset: immediate restart"


def test_fatal_exit_fails_at_once_with_the_error_as_reason_and_is_never_restarted():
    c, runtime, clock = make()
    c.start()
    hello(c)
    event(c, 1, ErrorEvent(code="logged-out", message="logged out: pair again", fatal=True, status=401))
    c.on_exit(exit_codes.FATAL)
    assert c.state is S.FAILED and c.reason == "logged-out: logged out: pair again"
    clock.advance(1000)
    runtime.run_timers()
    assert len(runtime.spawned) == 1


def test_stop_ends_in_stopped_and_restart_respawns_without_counting_a_crash():
    c, runtime, clock = make()
    c.start()
    hello(c)
    c.restart()
    assert c.state is S.STOPPING
    c.on_exit(0)
    assert c.state is S.INITIALIZING and c.restarts == 0
    hello(c)
    c.stop()
    c.on_exit(0)
    assert c.state is S.STOPPED and c.get_status().pid is None
    c.stop()  # stopping a stopped container is harmless
    assert c.state is S.STOPPED


def test_stop_during_backoff_cancels_the_pending_restart():
    c, runtime, clock = make()
    c.start()
    hello(c)
    crash(c, runtime)
    hello(c)
    crash(c, runtime)
    assert c.state is S.BACKOFF
    c.stop()
    clock.advance(100)
    runtime.run_timers()
    assert c.state is S.STOPPED and len(runtime.spawned) == 2


def test_transitions_outside_the_table_are_refused():
    c, runtime, clock = make()
    with pytest.raises(InvalidTransition):
        c._transition(S.RUNNING, "not from stopped")


def test_seq_gaps_are_counted_as_lost_events():
    c, runtime, clock = make()
    c.start()
    hello(c, 0)
    c.on_message(Heartbeat("srv", "b1", c.process.pid, 1, time.time(), BotStatus.ONLINE))
    c.on_message(Heartbeat("srv", "b1", c.process.pid, 5, time.time(), BotStatus.ONLINE))
    assert c.get_status().events_lost == 3


def test_listeners_get_their_event_type_and_a_raising_listener_does_not_stop_the_others(caplog):
    c, runtime, clock = make()
    got, everything = [], []
    c.on_container_event("creds-update", lambda e: 1 / 0)
    c.on_container_event("creds-update", got.append)
    c.on("*", everything.append)
    with pytest.raises(ValueError):
        c.on_container_event("no-such-type", got.append)
    c.start()
    hello(c)
    with caplog.at_level(logging.ERROR):
        event(c, 1, CredsUpdate(verified=True, phone_number="15550001111", last_updated=time.time() - 2))
    assert len(got) == 1 and got[0].type == "creds-update" and got[0].data["phone_number"] == "15550001111"
    assert "listener" in caplog.text
    assert {e.type for e in everything} == {"state", "creds-update"}
    assert 1500 < c.get_credential_age() < 60_000, "age in milliseconds"


def test_event_history_keeps_the_last_n_events():
    c, runtime, clock = make()
    c.start()
    hello(c)
    for i in range(1, 9):
        event(c, i, MessageUpsert(id=f"m{i}", chat="c", sender="s", timestamp=1.0, from_me=False, text=str(i)))
    history = c.get_event_history()
    assert [e.data["id"] for e in history] == ["m4", "m5", "m6", "m7", "m8"]
    assert [e.data["id"] for e in c.get_event_history(2)] == ["m7", "m8"]
    assert c.get_status().event_history_size == 5


def test_status_follows_connection_events_and_carries_process_facts():
    c, runtime, clock = make()
    c.start()
    hello(c)
    event(c, 1, ConnectionUpdate("connecting", attempt=2))
    assert c.get_status().bot_status is BotStatus.LOADING and c.get_status().connection_attempts == 2
    event(c, 2, ConnectionUpdate("open", attempt=2))
    clock.advance(4.0)
    status = c.get_status()
    assert status.bot_status is BotStatus.ONLINE and status.connection_attempts == 0
    assert status.uptime == pytest.approx(4.0) and status.rss == 12 * 1024 * 1024 and status.cpu == 1.5
    assert set(dataclasses.asdict(status)) >= {
        "container_id", "bot_status", "container_state", "is_healthy", "last_heartbeat", "connection_attempts",
        "creds_last_updated", "event_history_size", "pid", "restarts", "uptime", "last_exit", "next_restart_at",
        "reason", "events_lost", "rss", "cpu"}


def test_bot_manager_exposes_the_original_api():
    clock = FakeClock()
    manager = BotManager(FakeRuntime(clock), "srv")
    bot = BotConfig(id="b1")
    container = manager.create_bot_container("b1", bot)
    assert manager.get_bot_container("b1") is container and container.get_bot_instance() is bot
    assert list(manager.get_all_bot_containers()) == ["b1"]
    assert manager.get_container_health_status()["b1"].container_state is S.STOPPED
    assert manager.get_container_event_history("b1", 10) == []
    with pytest.raises(UnknownBot, match="no bot 'zz'"):
        manager.get_bot_container("zz")
    with pytest.raises(ValueError):
        manager.create_bot_container("b1", bot)


def test_a_worker_that_cannot_be_started_is_retried_under_the_restart_policy():
    c, runtime, clock = make()
    runtime.spawn_errors = [ConnectionRefusedError(111, "Connection refused"), OSError(11, "fork failed")]
    c.start()
    assert c.state is S.BACKOFF and c.process is None and runtime.spawned == []
    assert c.reason.startswith("could not start its worker: ConnectionRefusedError")
    assert c.last_exit == "never started" and c.restarts == 1
    runtime.run_timers()  # the first retry of a streak is immediate, but on the next loop pass
    assert c.state is S.BACKOFF and "fork failed" in c.reason and c.restarts == 2
    assert c.next_restart_at is not None
    clock.advance(POLICY.initial)
    runtime.run_timers()
    assert c.state is S.INITIALIZING and len(runtime.spawned) == 1
    hello(c)
    assert c.state is S.RUNNING


def test_a_worker_that_never_starts_ends_failed_at_the_intensity_limit():
    c, runtime, clock = make()
    runtime.spawn_errors = [OSError(12, "Cannot allocate memory")] * (POLICY.max_restarts + 1)
    c.start()
    for _ in range(POLICY.max_restarts + 1):
        clock.advance(POLICY.max)
        runtime.run_timers()
    assert c.state is S.FAILED and "gave up after more than 3 restarts" in c.reason
    assert "Cannot allocate memory" in c.reason


def test_a_staggered_start_is_cancelled_by_a_stop_before_it_fires():
    c, runtime, clock = make()
    c.start_later(2.0)
    assert c.state is S.STOPPED
    c.stop("removed from the configuration")
    clock.advance(3.0)
    runtime.run_timers()
    assert c.state is S.STOPPED and runtime.spawned == [], "a stopped (or removed) bot started anyway"
    other, runtime, clock = make("b2")
    other.start_later(2.0)
    clock.advance(2.0)
    runtime.run_timers()
    assert other.state is S.INITIALIZING and len(runtime.spawned) == 1


def test_the_health_deadline_is_when_the_worker_goes_stale_and_none_without_a_worker():
    c, runtime, clock = make()
    assert c.stale_at() is None
    c.start()
    assert c.stale_at() == clock() + 3.0, "a new worker has heartbeat_timeout to say hello"
    clock.advance(1.0)
    hello(c)
    assert c.stale_at() == clock() + 3.0
    c.stop()
    assert c.stale_at() is None, "a worker being stopped is not timed"


def test_a_repeated_or_late_seq_loses_nothing_and_a_new_worker_counts_from_zero_again():
    c, runtime, _ = make()
    c.start()
    hello(c)
    for seq in (1, 2, 2, 1, 3):  # a repeat and a late one are no loss; the count goes on from 3
        c.on_message(Heartbeat("srv", "b1", c.process.pid, seq, time.time(), BotStatus.ONLINE))
    assert c.get_status().events_lost == 0
    c.on_message(Heartbeat("srv", "b1", c.process.pid, 6, time.time(), BotStatus.ONLINE))
    assert c.get_status().events_lost == 2
    c.restart()
    c.on_exit(0)
    hello(c)  # the new worker's stream starts at 0 again: no loss counted for it
    c.on_message(Heartbeat("srv", "b1", c.process.pid, 1, time.time(), BotStatus.ONLINE))
    assert c.get_status().events_lost == 2


def test_status_answers_from_samples_up_to_5_s_old_then_samples_again_a_few_workers_a_turn():
    from types import SimpleNamespace

    from protocol.control import Request
    from supervisor.commands import status

    from .fakes import FakeProcess

    reads = []

    class Counted(FakeProcess):
        def resources(self) -> tuple[int, float]:
            reads.append(self.pid)
            return 12 * 1024 * 1024, 1.5

    clock = FakeClock()
    runtime = FakeRuntime(clock)
    runtime.spawn = lambda container: Counted(pid=6000 + len(fleet_pids), sentinel=-1)  # type: ignore
    containers, fleet_pids = [], []
    for i in range(60):
        c = BotContainer(BotConfig(id=f"b{i}", heartbeat_interval=1.0, backoff=POLICY), runtime, "srv", clock=clock)
        c.start()
        fleet_pids.append(c.process.pid)
        hello(c)
        containers.append(c)
    fleet = {c.bot.id: c for c in containers}
    manager = type("Fleet", (), {"find": staticmethod(fleet.get), "get_bot_container": staticmethod(fleet.__getitem__),
                                 "__iter__": lambda self: iter(fleet.values())})()
    sup = SimpleNamespace(manager=manager, server="srv", pid=1, instance=1, stats={}, call_later=runtime.call_later)
    replies = []

    def ask() -> int:
        before = len(reads)
        status.execute(sup, Request("1", "status", {}), replies.append)
        assert replies[-1].ok and replies[-1].result["bots"][0]["rss"] == 12 * 1024 * 1024
        return len(reads) - before

    def turns() -> list[int]:
        """The loop's turns after the answer: what each read, until no refresh is left."""
        out = []
        while runtime.timers.next_deadline() is not None:
            clock.advance(status.REFRESH_GAP_S)
            before = len(reads)
            runtime.run_timers()
            out.append(len(reads) - before)
        return out

    assert ask() == 60, "never sampled: every worker is read before the answer"
    assert sum(turns()) == 0, "fresh samples are not read again"
    clock.advance(2.0)
    assert ask() == 0, "2 s old samples: the answer does not wait for /proc"
    assert turns() == [25, 25, 10], "sampled again after the answer, a few workers a turn"
    clock.advance(6.0)
    assert ask() == 60, "older than 5 s: read before answering"
