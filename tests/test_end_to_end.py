"""The walking skeleton end to end: a real `botvisor run`, its workers, and a tap."""

from __future__ import annotations

import os
import signal
import time

import pytest

from protocol import ContainerState, Event, EventType, Heartbeat, Hello, StateChange

from .harness import alive, wait_until


def test_every_bot_says_hello_heartbeats_and_sends_events_with_gap_free_seq(fleet_factory, launch):
    bots = [{"id": f"b{i}", "simulated": {"message_rate": 20.0, "seed": i}} for i in range(3)]
    fleet = fleet_factory(bots, heartbeat_interval=0.1)
    service, tap = launch(fleet)
    wanted = {b["id"] for b in bots}
    per_bot: dict[str, list] = {b: [] for b in wanted}

    def enough(message) -> bool:
        if message.bot in per_bot and not isinstance(message, StateChange):
            per_bot[message.bot].append(message)
        return all(
            any(isinstance(m, Hello) for m in ms)
            and sum(isinstance(m, Heartbeat) for m in ms) >= 2
            and any(isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT for m in ms)
            for ms in per_bot.values()
        )

    tap.wait_for(enough, timeout=20, what="hello, 2 heartbeats and a message from every bot")
    for bot, messages in per_bot.items():
        assert isinstance(messages[0], Hello), f"{bot}: first message must be hello, got {messages[0]!r}"
        seqs = [m.seq for m in messages]
        assert seqs == list(range(len(seqs))), f"{bot}: seq must start at 0 with no gap: {seqs[:20]}"
        assert len({m.pid for m in messages}) == 1


def test_a_killed_worker_is_replaced_with_a_new_pid_and_hello_within_a_second(fleet_factory, launch):
    fleet = fleet_factory(["b1", "b2"])
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1", what="b1's hello")
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b2", what="b2's hello")
    killed_at = time.monotonic()
    os.kill(first.pid, signal.SIGKILL)
    second = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1" and m.pid != first.pid,
                          timeout=10, what="the replacement's hello")
    elapsed = time.monotonic() - killed_at
    assert second.pid != first.pid and second.seq == 0
    assert elapsed < 1.0, f"replacement hello took {elapsed:.3f} s"
    status = {b["bot_id"]: b for b in service.control("status")["bots"]}
    assert status["b1"]["restarts"] == 1 and status["b1"]["last_exit"] == "SIGKILL"
    assert status["b2"]["restarts"] == 0, "the other bot must be untouched"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_stops_every_worker_and_leaves_no_process_behind(fleet_factory, launch, sig):
    fleet = fleet_factory(["b1", "b2", "b3"])
    service, tap = launch(fleet)
    for bot in ("b1", "b2", "b3"):
        tap.wait_for(lambda m, bot=bot: isinstance(m, Hello) and m.bot == bot, what=f"{bot}'s hello")
    started = {p.pid for p in service.descendants()}
    assert tap.worker_pids <= started, "workers must be descendants of the supervisor"
    service.signal(sig)
    assert service.wait(timeout=15) == 0
    wait_until(lambda: not any(alive(pid) for pid in started | tap.worker_pids), timeout=5,
               what="every process the supervisor started to exit")
    for bot in ("b1", "b2", "b3"):
        tap.wait_for(lambda m, bot=bot: isinstance(m, StateChange) and m.bot == bot
                     and m.state is ContainerState.STOPPED, timeout=5, what=f"{bot} stopped")


def test_run_dir_is_private_and_the_supervisor_is_its_only_user(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    assert fleet.run_dir.stat().st_mode & 0o777 == 0o700
    from .harness import Service

    second = Service(fleet)
    try:
        assert second.wait(timeout=20) == 1
        assert "another supervisor" in second.log()
    finally:
        second.cleanup()
    assert service.proc.poll() is None, "the first supervisor keeps running"
