"""Liveness: a worker whose loop stops is replaced, whether frozen by SIGSTOP or hung inside."""

from __future__ import annotations

import os
import signal
import time

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
