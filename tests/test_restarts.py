"""The restart policy end to end: backoff, the intensity limit, fatal exits, per-bot isolation."""

from __future__ import annotations

from protocol import ContainerState as S
from protocol import Hello, StateChange

FAST = {"initial": 0.2, "factor": 2.0, "max": 5.0, "jitter": 0.0, "reset_after": 60.0, "max_restarts": 3,
        "restart_window": 60.0}


def states_of(tap, bot: str) -> list[StateChange]:
    return [m for m in tap.seen if isinstance(m, StateChange) and m.bot == bot]


def test_a_crash_looping_bot_backs_off_then_fails_while_the_others_run_on(fleet_factory, launch):
    bots = [{"id": "loops", "simulated": {"crash_after": 0.1}}, {"id": "steady"}]
    fleet = fleet_factory(bots, backoff=FAST)
    service, tap = launch(fleet)
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "loops" and m.state is S.FAILED,
                          timeout=30, what="loops -> failed")
    assert "gave up after more than 3 restarts within 60 s" in failed.reason
    assert "exit 70 (crash)" in failed.reason
    backoffs = [m for m in states_of(tap, "loops") if m.state is S.BACKOFF]
    assert len(backoffs) == 3
    # the delays: immediate, then initial, then initial x factor (no jitter in this config)
    waits = [round(b.next_restart_at - b.ts, 1) for b in backoffs]
    assert waits == [0.0, 0.2, 0.4], waits
    hellos = [m for m in tap.seen if isinstance(m, Hello) and m.bot == "loops"]
    assert len(hellos) == 4 and len({h.pid for h in hellos}) == 4
    steady = service.control("status", {"bots": ["steady"]})["bots"][0]
    assert steady["container_state"] == "running" and steady["restarts"] == 0
    # failed stays failed: no silent retry loop
    loops = service.control("status", {"bots": ["loops"]})["bots"][0]
    assert loops["container_state"] == "failed" and loops["pid"] is None and loops["reason"] == failed.reason
    # until an operator starts it again
    service.control("start", {"bots": ["loops"]})
    again = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "loops" and m.pid not in {h.pid for h in hellos},
                         timeout=10, what="a worker after the operator's start")
    assert again.seq == 0


def test_a_fatal_exit_fails_the_bot_at_once_with_the_reason(fleet_factory, launch):
    bots = [{"id": "banned", "simulated": {"ban_after": 0.2}}, {"id": "loggedout", "simulated": {"logout_after": 0.2}}]
    fleet = fleet_factory(bots, backoff=FAST)
    service, tap = launch(fleet)
    for bot, code in (("banned", "temporary-ban"), ("loggedout", "logged-out")):
        failed = tap.wait_for(lambda m, bot=bot: isinstance(m, StateChange) and m.bot == bot and m.state is S.FAILED,
                              timeout=15, what=f"{bot} -> failed")
        assert failed.reason.startswith(code), failed.reason
        assert failed.last_exit == "exit 78 (fatal)"
        assert not [m for m in states_of(tap, bot) if m.state is S.BACKOFF], "fatal: never restarted"
    status = {b["bot_id"]: b for b in service.control("status")["bots"]}
    assert status["banned"]["restarts"] == 0 and status["loggedout"]["restarts"] == 0
