"""Live reload (SIGHUP): added bots start, removed stop, changed restart, the rest keep their pid."""

from __future__ import annotations

import os
import signal

from protocol import ContainerState as S
from protocol import Heartbeat, Hello, Notice, StateChange

from .harness import wait_until


def pids_by_bot(service) -> dict[str, int | None]:
    return {b["bot_id"]: b["pid"] for b in service.control("status")["bots"]}


def test_sighup_applies_additions_removals_and_changes_and_leaves_the_rest_alone(fleet_factory, launch):
    fleet = fleet_factory(["keep", "change", "remove"])
    service, tap = launch(fleet)
    for bot in ("keep", "change", "remove"):
        tap.wait_for(lambda m, bot=bot: isinstance(m, Hello) and m.bot == bot, what=f"{bot}'s hello")
    before = pids_by_bot(service)
    fleet.bots = [
        {"id": "keep", "autostart": False},
        {"id": "change", "autostart": False, "simulated": {"message_rate": 5.0}},
        {"id": "added", "autostart": True},
    ]
    fleet.write()
    service.signal(signal.SIGHUP)
    tap.wait_for(lambda m: isinstance(m, Notice) and "reloaded" in m.message, timeout=10, what="the reload notice")
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "added", timeout=10, what="the added bot's hello")
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "change" and m.pid != before["change"], timeout=10,
                 what="the changed bot's new worker")
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "remove" and m.state is S.STOPPED, timeout=10,
                 what="the removed bot stopped")
    after = pids_by_bot(service)
    assert set(after) == {"keep", "change", "added"}
    assert after["keep"] == before["keep"], "an unchanged bot keeps its worker"
    assert after["change"] != before["change"]


def test_a_reload_with_an_invalid_file_is_refused_and_the_fleet_is_left_as_it_was(fleet_factory, launch):
    fleet = fleet_factory(["a", "b"])
    service, tap = launch(fleet)
    for bot in ("a", "b"):
        tap.wait_for(lambda m, bot=bot: isinstance(m, Hello) and m.bot == bot, what=f"{bot}'s hello")
    before = pids_by_bot(service)
    good = fleet.config_path.read_text()
    fleet.config_path.write_text(good + '\n[[bots]]\nid = "../escape"\n')
    service.signal(signal.SIGHUP)
    refused = tap.wait_for(lambda m: isinstance(m, Notice) and m.level == "error", timeout=10,
                           what="the refusal notice")
    assert "reload refused" in refused.message and "bots[2].id" in refused.message
    assert pids_by_bot(service) == before
    assert "reload refused" in service.log()
    # fixing the file makes the next reload work
    fleet.config_path.write_text(good)
    service.signal(signal.SIGHUP)
    tap.wait_for(lambda m: isinstance(m, Notice) and "reloaded" in m.message, timeout=10, what="a good reload")
    assert pids_by_bot(service) == before


def test_a_bot_removed_and_added_back_before_its_worker_stopped_comes_back(fleet_factory, launch):
    fleet = fleet_factory(["a", {"id": "slow", "stop_timeout": 3.0}], heartbeat_interval=0.5, heartbeat_timeout=30)
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "slow", what="slow's hello")
    os.kill(first.pid, signal.SIGSTOP)  # frozen: it stays in stopping until SIGKILL after 3 s
    original = list(fleet.bots)
    fleet.bots = [original[0]]
    fleet.write()
    service.signal(signal.SIGHUP)
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "slow" and m.state is S.STOPPING, timeout=10,
                 what="slow stopping")
    fleet.bots = original
    fleet.bots[1] = {**original[1], "autostart": True}
    fleet.write()
    service.signal(signal.SIGHUP)
    tap.wait_for(lambda m: isinstance(m, Notice) and m.message.count("reloaded") and "1 added" in m.message,
                 timeout=10, what="the second reload")
    again = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "slow" and m.pid != first.pid, timeout=15,
                         what="slow back with a new worker")
    assert again.seq == 0
    assert "internal error" not in service.log()
    assert "slow" in pids_by_bot(service)


def test_the_reload_plan_sorts_bots_and_refuses_settings_that_need_a_restart(tmp_path):
    from pathlib import Path

    from protocol.config import parse_config
    from supervisor.reload import plan_reload

    def config(text: str):
        import tomllib

        return parse_config(tomllib.loads(text), Path(tmp_path / "x.toml"))

    old = config('[supervisor]\nheartbeat_interval = 5\n[[bots]]\nid = "a"\n[[bots]]\nid = "b"\n[[bots]]\nid = "c"\n')
    new = config('[supervisor]\nheartbeat_interval = 5\n[[bots]]\nid = "a"\n[[bots]]\nid = "b"\nproxy = "socks5://p"\n'
                 '[[bots]]\nid = "d"\n')
    plan = plan_reload(old, new)
    assert [b.id for b in plan.added] == ["d"] and plan.removed == ["c"]
    assert [b.id for b in plan.changed] == ["b"] and plan.unchanged == ["a"]
    inherited = config('[supervisor]\nheartbeat_interval = 7\n[[bots]]\nid = "a"\n[[bots]]\nid = "b"\n'
                       '[[bots]]\nid = "c"\n')
    assert {b.id for b in plan_reload(old, inherited).changed} == {"a", "b", "c"}, "inherited settings count"
    moved = config('[supervisor]\nheartbeat_interval = 5\nserver_name = "other"\n[[bots]]\nid = "a"\n')
    assert "server_name can only change with a restart" in plan_reload(old, moved).refused


def test_a_bot_removed_during_a_staggered_boot_is_never_started(fleet_factory, launch):
    # both start with the fleet, 'later' 2 s after 'first'; the reload comes in between
    fleet = fleet_factory([{"id": "first", "autostart": True}, {"id": "later", "autostart": True}],
                          start_interval=2.0)
    service, tap = launch(fleet)
    wait_until(lambda: pids_by_bot(service)["first"] is not None, 10, "first's worker")
    assert pids_by_bot(service)["later"] is None, "later started before its turn"
    fleet.bots = [{"id": "first", "autostart": True}]
    fleet.write()
    service.signal(signal.SIGHUP)
    tap.wait_for(lambda m: isinstance(m, Notice) and "reloaded" in m.message, timeout=10, what="the reload notice")
    # the fleet-started line is due at the same instant as later's start, and comes after it
    wait_until(lambda: "fleet started" in service.log(), 10, "the end of the staggered boot")
    # the tap stream is ordered: a heartbeat of first's sent after that line comes after anything
    # the pending start could have published (an orphan's start shows only as its state change)
    tap.wait_for(lambda m: isinstance(m, Heartbeat) and m.bot == "first", history=False, timeout=10,
                 what="a heartbeat after the boot ended")
    assert set(pids_by_bot(service)) == {"first"}
    started = [m for m in tap.seen if m.bot == "later"
               and (isinstance(m, Hello) or isinstance(m, StateChange) and m.state is S.INITIALIZING)]
    assert not started, f"a removed bot was started: {started}"
    assert service.control("status")["stats"].get("rejected", 0) == 0, "an unknown worker was heard from"
