"""max_memory_mb: a worker over it is restarted under the restart policy, checked every heartbeat."""

from __future__ import annotations

import pytest

from protocol import ContainerState, Hello, StateChange
from protocol.config import ConfigError, parse_config


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
    # checked on every heartbeat (0.1 s here) against an RSS at most MEMORY_SAMPLE_AGE_S (1 s) old,
    # not on a slow timer: within a heartbeat plus a second (and a margin for a loaded machine)
    assert stopping.ts - first.ts < 1.5, f"caught {stopping.ts - first.ts:.2f} s after the hello"
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


def test_a_bot_over_its_limit_at_every_start_ends_failed_instead_of_looping(fleet_factory, launch):
    bots = [{"id": "big", "simulated": {"allocate_mb": 100}}]
    fleet = fleet_factory(bots, heartbeat_interval=0.1, max_memory_mb=60,  # inherited from [supervisor]
                          backoff={"initial": 0.05, "max": 0.1, "max_restarts": 2, "restart_window": 60.0})
    service, tap = launch(fleet)
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "big" and m.state is ContainerState.FAILED,
                          timeout=20, what="big failed")
    assert "over its memory limit" in failed.reason and "gave up after more than 2 restarts" in failed.reason
    hellos = {m.pid for m in tap.seen if isinstance(m, Hello) and m.bot == "big"}
    assert len(hellos) == 3, "the first start and two restarts"


def test_max_memory_mb_is_inherited_and_overridable(tmp_path):
    raw = {"supervisor": {"max_memory_mb": 512}, "bots": [{"id": "a"}, {"id": "b", "max_memory_mb": 64}]}
    config = parse_config(raw, tmp_path / "botvisor.toml")
    assert [bot.max_memory_mb for bot in config.bots] == [512, 64]
    assert parse_config({"bots": [{"id": "a"}]}, tmp_path / "x.toml").bots[0].max_memory_mb is None
    with pytest.raises(ConfigError, match=r"bots\[0\] \(a\)\.max_memory_mb"):
        parse_config({"bots": [{"id": "a", "max_memory_mb": 0}]}, tmp_path / "botvisor.toml")
