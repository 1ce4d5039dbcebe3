"""Liveness: a worker whose loop stops is replaced, whether frozen by SIGSTOP or hung inside."""

from __future__ import annotations

import os
import signal
import time

import pytest

from protocol import ContainerState as S
from protocol import Hello, StateChange

from .harness import alive, wait_until


def state(bot: str, to: S):
    return lambda m: isinstance(m, StateChange) and m.bot == bot and m.state is to


def test_a_sigstopped_worker_goes_stale_is_killed_after_stop_timeout_and_restarted(fleet_factory, launch):
    fleet = fleet_factory(["frozen", "bystander"], heartbeat_interval=0.1, heartbeat_timeout=0.6, stop_timeout=0.5)
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "frozen", what="hello")
    other = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "bystander", what="bystander hello")
    frozen_at = time.monotonic()
    os.kill(first.pid, signal.SIGSTOP)
    try:
        stopping = tap.wait_for(state("frozen", S.STOPPING), timeout=10, what="frozen -> stopping")
        assert "no heartbeat" in stopping.reason
        replacement = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "frozen" and m.pid != first.pid,
                                   timeout=10, what="the replacement's hello")
    finally:
        if alive(first.pid):
            os.kill(first.pid, signal.SIGKILL)
    took = time.monotonic() - frozen_at
    assert took < 0.6 + 0.5 + 2.0, f"replaced after {took:.2f} s"
    assert not alive(first.pid), "a stopped process ignores SIGTERM: it must have been SIGKILLed"
    backoff = tap.wait_for(state("frozen", S.BACKOFF), what="frozen -> backoff")
    assert backoff.last_exit == "SIGKILL"
    assert replacement.seq == 0
    bystander = service.control("status", {"bots": ["bystander"]})["bots"][0]
    assert bystander["pid"] == other.pid and bystander["restarts"] == 0


def test_a_worker_whose_loop_hangs_while_the_process_lives_is_replaced(fleet_factory, launch):
    bot = {"id": "hangs", "simulated": {"hang_after": 0.5}}
    fleet = fleet_factory([bot], heartbeat_interval=0.1, heartbeat_timeout=0.5, stop_timeout=0.3)
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello), what="hello")
    stopping = tap.wait_for(state("hangs", S.STOPPING), timeout=10, what="the hung worker to be stopped")
    assert "no heartbeat" in stopping.reason
    tap.wait_for(lambda m: isinstance(m, Hello) and m.pid != first.pid, timeout=10, what="a new worker")
    wait_until(lambda: not alive(first.pid), timeout=5, what="the hung worker to be gone")
    # the first worker's end (a later one, judged early on a loaded machine, may end by SIGTERM)
    backoff = tap.wait_for(state("hangs", S.BACKOFF), what="hangs -> backoff")
    assert backoff.last_exit == "SIGKILL", "a hung loop ignores SIGTERM: it must have been SIGKILLed"
    assert service.control("status")["bots"][0]["restarts"] >= 1


def test_heartbeats_keep_to_their_groups_shared_beat_and_never_come_later_than_the_interval():
    """Every worker beats at (k + its group's phase) * interval of the host's monotonic clock, so
    a fleet's heartbeats reach the supervisor in a few batches, not one wakeup each."""
    from worker.beats import beat_phase, next_beat_after

    groups = 5
    phases = {beat_phase(f"bot{i}", groups) for i in range(200)}
    assert len(phases) == groups and all(0 <= p < 1 for p in phases), "spread over every group"
    assert beat_phase("bot7", groups) == beat_phase("bot7", groups), "the same in every worker"
    assert beat_phase("bot7", 1) == 0.0
    for interval in (0.05, 1.0, 30.0):
        for phase in sorted(phases):
            for now in (0.0, 12.345, 1000.0 + interval / 2, 7 * interval, 98765.4321):
                beat = next_beat_after(now, interval, phase)
                assert now < beat <= now + interval + 1e-9
                k = beat / interval - phase
                assert abs(k - round(k)) < 1e-6, "on the group's beat"
    # two workers of one group started at different moments beat together from their second beat on
    assert next_beat_after(100.35, 1.0, 0.3) == next_beat_after(101.25, 1.0, 0.3) == pytest.approx(101.3)
    assert next_beat_after(100.13, 1.0, 0.3) == pytest.approx(100.3)


def test_a_fleet_beats_in_groups_of_at_most_the_group_size():
    """The burst a group makes is bounded whatever the fleet's size (p99 of events sent meanwhile)."""
    from collections import Counter

    from worker.beats import BEAT_GROUP_SIZE, MAX_BEAT_GROUPS, beat_groups, beat_phase

    assert beat_groups(1) == beat_groups(BEAT_GROUP_SIZE) == 1
    assert beat_groups(BEAT_GROUP_SIZE + 1) == 2
    assert beat_groups(BEAT_GROUP_SIZE * 5) == 5
    assert beat_groups(10**6) == MAX_BEAT_GROUPS
    for n in (50, 200, 1000):
        sizes = Counter(beat_phase(f"bot{i}", beat_groups(n)) for i in range(n))
        assert len(sizes) == beat_groups(n)
        assert max(sizes.values()) <= BEAT_GROUP_SIZE * 1.5, f"N={n}: groups of {sorted(sizes.values())}"


def test_the_supervisor_gives_each_worker_its_fleets_group_count(tmp_path):
    from protocol.config import load_config
    from supervisor.arbiter import Supervisor
    from worker.beats import beat_groups

    bots = "".join(f'[[bots]]\nid = "b{i}"\nbackend = "simulated"\n' for i in range(90))
    (tmp_path / "botvisor.toml").write_text(
        f'[supervisor]\nserver_name = "beats"\nauth_dir = "{tmp_path / "auth"}"\nrun_dir = "{tmp_path / "run"}"\n{bots}')
    sup = Supervisor(load_config(tmp_path / "botvisor.toml"))
    spec = sup.worker_spec(sup.manager.get_bot_container("b3").bot, b"k" * 32)
    assert spec.beat_groups == beat_groups(90) > 1

