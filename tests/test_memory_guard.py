"""max_memory_mb: a worker over it is restarted under the restart policy, checked every heartbeat."""

from __future__ import annotations

from protocol import ContainerState, Hello, StateChange


def test_a_bot_over_its_memory_limit_is_restarted_with_the_reason_and_the_others_are_untouched(fleet_factory, launch):
    # an idle simulated worker is about 25 MiB resident; "big" allocates 100 MiB more once connected
    bots = [
        {"id": "big", "max_memory_mb": 60, "simulated": {"allocate_mb": 100}},
        {"id": "small", "max_memory_mb": 60},
    ]
    fleet = fleet_factory(bots, heartbeat_interval=0.1, backoff={"initial": 0.2, "max_restarts": 10})
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "big", what="big's hello")
    small = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "small", what="small's hello")

    stopping = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "big"
                            and m.state is ContainerState.STOPPING, timeout=10, what="big stopped over its limit")
    assert "over its memory limit" in stopping.reason and "max_memory_mb 60" in stopping.reason, stopping.reason
    # checked on every heartbeat (0.1 s here), not on a slow timer
    assert stopping.ts - first.ts < 1.0, f"caught {stopping.ts - first.ts:.2f} s after the hello"
    backoff = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "big"
                           and m.state is ContainerState.BACKOFF, timeout=10, what="big in backoff")
    assert "over its memory limit" in backoff.reason, "the restart must say why"
    assert backoff.last_exit.startswith("exit 0"), "a graceful stop (SIGTERM), not a kill"
    second = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "big" and m.pid != first.pid, timeout=10,
                          what="big restarted")
    assert second.seq == 0

    status = {b["bot_id"]: b for b in service.control("status")["bots"]}
    assert status["big"]["restarts"] >= 1
    assert status["small"]["restarts"] == 0 and status["small"]["pid"] == small.pid, "small must be untouched"
    assert status["small"]["container_state"] == "running"
