"""A temporary ban: the bot starts by itself when it expires, and an operator's early start is
refused unless forced. A fleet-wide outage: the same failure on many bots is one notice."""

from __future__ import annotations

import time

from protocol import ContainerState as S
from protocol import ErrorEvent, Notice, StateChange, exit_codes
from supervisor.outage import OutageWatch

from .test_container import event, hello, make


def banned(expires_in: float) -> tuple:
    c, runtime, clock = make()
    c.start()
    hello(c)
    event(c, 1, ErrorEvent(code="temporary-ban", message="banned (101)", fatal=True, status=402,
                           expires_at=time.time() + expires_in))
    c.on_exit(exit_codes.FATAL)
    return c, runtime, clock


def test_a_banned_bot_fails_with_its_expiry_and_starts_by_itself_when_the_ban_ends():
    c, runtime, clock = banned(120)
    assert c.state is S.FAILED and "starts again when the ban expires at" in c.reason
    assert len(runtime.spawned) == 1
    clock.advance(100)
    runtime.run_timers()
    assert c.state is S.FAILED, "not before the expiry"
    clock.advance(21)
    runtime.run_timers()
    assert c.state is S.INITIALIZING and len(runtime.spawned) == 2 and c.banned_until is None


def test_an_early_start_is_refused_with_the_expiry_unless_forced():
    c, runtime, clock = banned(3600)
    refusal = c.start_refused()
    assert refusal is not None and "temporarily banned until" in refusal and "force" in refusal
    assert c.start_refused(force=True) is None
    c.start()  # what the start command does once it is not refused (forced)
    assert c.state is S.INITIALIZING and c.start_refused() is None


def test_a_ban_without_expiry_is_not_started_again():
    c, runtime, clock = make()
    c.start()
    hello(c)
    event(c, 1, ErrorEvent(code="temporary-ban", message="banned, no expiry", fatal=True, status=402))
    c.on_exit(exit_codes.FATAL)
    clock.advance(10 * 86400)
    runtime.run_timers()
    assert c.state is S.FAILED and c.start_refused() is None


def test_the_same_failure_on_three_bots_within_the_window_is_one_outage():
    watch = OutageWatch(threshold=3, window=300)
    outdated = ErrorEvent(code="client-outdated", message="upgrade neonize", fatal=True, status=405)
    assert watch.observe("a", outdated, 0) is None
    assert watch.observe("b", ErrorEvent(code="logged-out", message="x", fatal=True, status=401), 10) is None
    assert watch.observe("b", outdated, 20) is None
    notice = watch.observe("c", outdated, 30)
    assert notice is not None and "3 bots failed with client-outdated (WhatsApp status 405)" in notice
    assert "a, b, c" in notice
    assert watch.observe("d", outdated, 40) is None, "one notice per outage, not one per bot"
    assert [(o.code, len(o.bots)) for o in watch.active(50)] == [("client-outdated", 4)]
    assert watch.active(1000) == []
    assert watch.observe("a", outdated, 1000) is None, "outside the window it starts counting again"
    assert watch.observe("x", ErrorEvent(code="send-failed", message="x"), 1001) is None  # not a WhatsApp failure


def test_a_fleet_banned_at_once_gets_one_outage_notice_on_the_tap(fleet_factory, launch):
    bots = [{"id": f"b{i}", "simulated": {"ban_after": 0.3}} for i in range(3)]
    fleet = fleet_factory(bots, outage_bots=3)
    service, tap = launch(fleet)
    for i in range(3):
        tap.wait_for(lambda m, i=i: isinstance(m, StateChange) and m.bot == f"b{i}" and m.state is S.FAILED,
                     timeout=15, what=f"b{i} failed")
    notice = tap.wait_for(lambda m: isinstance(m, Notice) and "fleet-wide outage" in m.message, what="the notice")
    assert notice.level == "error" and "temporary-ban" in notice.message and "b0, b1, b2" in notice.message
    assert sum(1 for m in tap.seen if isinstance(m, Notice) and "fleet-wide outage" in m.message) == 1


def test_an_active_outage_is_a_metric_by_code_and_status():
    import time as _time
    from types import SimpleNamespace

    from supervisor.metrics import FleetCollector

    watch = OutageWatch(threshold=2, window=300)
    now = _time.monotonic()
    error = ErrorEvent(code="client-outdated", message="x", fatal=True, status=405)
    watch.observe("a", error, now)
    watch.observe("b", error, now)
    supervisor = SimpleNamespace(manager=[], stats={}, outages=watch)
    families = {f.name: f for f in FleetCollector(supervisor, None).collect()}
    samples = families["botvisor_fleet_outage_bots"].samples
    assert [(s.labels, s.value) for s in samples] == [({"code": "client-outdated", "status": "405"}, 2.0)]


def test_botvisor_start_refuses_a_banned_bot_with_the_expiry_and_force_starts_it(fleet_factory, launch):
    from .test_simulate import cli

    fleet = fleet_factory([{"id": "b1", "simulated": {"ban_after": 0.3}}])
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is S.FAILED, timeout=15,
                 what="b1 failed")
    refused = cli(fleet, "start", "b1")
    assert refused.returncode == 1 and "b1: start refused: temporarily banned until" in refused.stdout
    forced = cli(fleet, "start", "--force", "b1")
    assert forced.returncode == 0 and "failed -> initializing" in forced.stdout
