"""Workers run below the supervisor in CPU priority, so a busy fleet cannot starve it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol import Hello
from protocol.config import ConfigError, load_config
from worker.priority import MAX_NICE, lower_priority

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


def test_a_worker_outside_its_own_session_leaves_the_shared_autogroup_alone():
    before = _autogroup_nice(os.getpid())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker that could not lead its own session: it shares ours
        try:
            os.setpgid(0, 0)  # a group leader, as some supervisors start their children: setsid refuses
            lower_priority(5)
            os.write(write_end, str(os.getpriority(os.PRIO_PROCESS, 0)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        child_nice = int(os.read(read_end, 16) or b"-99")
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert child_nice == min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, 0) + 5), "the process itself is lowered"
    assert _autogroup_nice(os.getpid()) == before, "the session's shared autogroup was reniced"
