"""Fatal vs transient, end to end, with the simulated backend's knobs.

The simulated faults must look exactly like the neonize ones (same event shapes, codes and
exit codes), so each test also compares with what the neonize mapping makes of the real event.
"""

from __future__ import annotations

import pytest
from neonize.proto import Neonize_pb2 as pb

from protocol import (
    Bye,
    ContainerState,
    CredsUpdate,
    Event,
    EventType,
    Hello,
    StateChange,
)
from worker.backends.neonize_events import map_event

pytestmark = pytest.mark.slow


def events_of(tap, pid: int, kind: EventType) -> list[Event]:
    return [m for m in tap.seen if isinstance(m, Event) and m.pid == pid and m.type is kind]


def fatal_end(tap, bot: str) -> tuple[Hello, Event, Bye, StateChange]:
    hello = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == bot, what=f"{bot}'s hello")
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == bot and m.state is ContainerState.FAILED,
                          timeout=15, what=f"{bot} failed")
    error = tap.wait_for(lambda m: isinstance(m, Event) and m.pid == hello.pid and m.type is EventType.ERROR,
                         what="the error event")
    bye = tap.wait_for(lambda m: isinstance(m, Bye) and m.pid == hello.pid, what="the bye")
    return hello, error, bye, failed


def test_a_ban_fails_the_container_with_its_reason_and_expiry_and_is_never_retried(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "simulated": {"ban_after": 0.3}}])
    service, tap = launch(fleet)
    hello, error, bye, failed = fatal_end(tap, "b1")
    assert (error.data.code, error.data.fatal, error.data.status) == ("temporary-ban", True, 402)
    assert error.data.expires_at > error.ts
    assert bye.exit_code == 78 and "temporary-ban" in failed.reason
    creds = events_of(tap, hello.pid, EventType.CREDS_UPDATE)[-1].data
    assert creds == CredsUpdate(verified=False, phone_number=creds.phone_number, last_updated=creds.last_updated,
                                reason="temporary-ban")
    real = map_event(pb.TemporaryBan(Code=pb.TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=3600), error.ts)
    assert (real.code, real.fatal, real.status, real.expires_at is not None) == \
        (error.data.code, error.data.fatal, error.data.status, True), "simulated and neonize bans must look alike"
    status = service.control("status")["bots"][0]
    assert status["container_state"] == "failed" and status["restarts"] == 0


def test_a_logout_fails_the_container_and_removes_the_session(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "simulated": {"logout_after": 0.3}}])
    service, tap = launch(fleet)
    hello, error, bye, failed = fatal_end(tap, "b1")
    real = map_event(pb.LoggedOut(OnConnect=False, Reason=pb.ConnectFailureReason.LOGGED_OUT), error.ts)
    assert (error.data.code, error.data.fatal, error.data.status) == (real.code, real.fatal, real.status) \
        == ("logged-out", True, 401)
    assert bye.exit_code == 78 and "logged-out" in failed.reason
    assert events_of(tap, hello.pid, EventType.CREDS_UPDATE)[-1].data.verified is False
    assert not (fleet.bot_dir("b1") / "creds.json").exists()


def test_disconnects_reconnect_inside_the_worker_and_the_container_stays_running(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "simulated": {"disconnect_every": 0.3}}],
                          backoff={"initial": 0.05, "jitter": 0.0})
    service, tap = launch(fleet)
    hello = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1", what="b1's hello")

    def opens(m) -> bool:
        return len([e for e in events_of(tap, hello.pid, EventType.CONNECTION_UPDATE)
                    if e.data.connection == "open"]) >= 3

    tap.wait_for(opens, timeout=15, what="three opens (two reconnects)")
    updates = [e.data for e in events_of(tap, hello.pid, EventType.CONNECTION_UPDATE)]
    closes = [u for u in updates if u.connection == "close"]
    assert len(closes) >= 2
    real = map_event(pb.StreamError(Code="503"), 0.0)
    for close in closes:  # the shape the neonize mapping gives a stream error, plus attempt and retry_in
        assert close.reason.startswith("stream error") and real.reason.startswith("stream error")
        assert close.attempt == 0 and close.retry_in == pytest.approx(0.05)
    assert [s.state for s in tap.seen if isinstance(s, StateChange) and s.bot == "b1"] == \
        [ContainerState.INITIALIZING, ContainerState.RUNNING], "a transient drop must not touch the container"
    assert {m.pid for m in tap.seen if isinstance(m, Hello) and m.bot == "b1"} == {hello.pid}


def test_failed_redials_run_out_then_the_supervisor_restarts_the_worker(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "max_reconnect_attempts": 2,
                            "simulated": {"disconnect_every": 0.2, "reconnect_failures": 5}}],
                          backoff={"initial": 0.05, "jitter": 0.0})
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1", what="b1's hello")
    bye = tap.wait_for(lambda m: isinstance(m, Bye) and m.pid == first.pid, timeout=15, what="b1 giving up")
    assert (bye.reason, bye.exit_code) == ("reconnect-exhausted", 70)
    failed_dials = [e.data for e in events_of(tap, first.pid, EventType.CONNECTION_UPDATE)
                    if e.data.connection == "close" and e.data.reason.startswith("dial failed")]
    assert [(d.attempt, d.retry_in) for d in failed_dials] == [(1, 0.05), (2, None)]
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is ContainerState.BACKOFF,
                 what="backoff")
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1" and m.pid != first.pid, timeout=15,
                 what="the restarted worker")
