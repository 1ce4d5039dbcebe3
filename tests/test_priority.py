"""Workers run below the supervisor in CPU priority, so a busy fleet cannot starve it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol import Hello
from supervisor.config import ConfigError, load_config
from worker.priority import MAX_NICE

from .harness import make_fleet


def _autogroup_nice(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None  # a kernel without autogroup scheduling


def test_each_worker_runs_its_nice_steps_below_the_supervisor(fleet_factory, launch):
    steps = {"default": 10, "same": 0, "lowest": 19}
    fleet = fleet_factory([{"id": "default"}, {"id": "same", "nice": 0}, {"id": "lowest", "nice": 19}])
    service, tap = launch(fleet)
    base = os.getpriority(os.PRIO_PROCESS, service.pid)
    for bot, step in steps.items():
        pid = tap.wait_for(lambda m, bot=bot: isinstance(m, Hello) and m.bot == bot, timeout=15,
                           what=f"{bot}'s hello").pid
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(MAX_NICE, base + step), bot
        # the worker leads its own session: with autogroup scheduling that group's nice is what counts
        group = _autogroup_nice(pid)
        if group is not None:
            assert group == min(MAX_NICE, step), (bot, group)


def test_nice_is_inherited_from_the_supervisor_section_and_range_checked(tmp_path):
    fleet = make_fleet(tmp_path, ["a", {"id": "b", "nice": 3}], nice=5)
    config = load_config(fleet.write())
    assert [bot.nice for bot in config.bots] == [5, 3]
    (tmp_path / "bad").mkdir()
    bad = make_fleet(tmp_path / "bad", [{"id": "a", "nice": 20}])
    with pytest.raises(ConfigError, match=r"bots\[0\] \(a\)\.nice: must be at most 19, got 20"):
        load_config(bad.write())
