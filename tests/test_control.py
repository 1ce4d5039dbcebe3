"""The control endpoint end to end: every command against a real supervisor and simulated bots,
the worker-forwarded ones through BotContainer.get_bot() handles, and every error path."""

from __future__ import annotations

import os
import signal
import time

import msgpack
import pytest
import zmq

from protocol import ContainerState, Event, EventType, Hello, Notice, StateChange
from protocol.client import (
    BotNotRunning,
    CommandTimeout,
    ControlClient,
    ControlError,
    NotRunning,
    UnknownBot,
)
from protocol.config import load_config
from protocol.control import Request, decode_reply, encode_request
from supervisor.container import BotContainer


def hello_of(tap, bot):
    return tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == bot, what=f"{bot}'s hello")


def online(tap, bot):
    tap.wait_for(lambda m: isinstance(m, Event) and m.bot == bot and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "open", what=f"{bot} online")


def running(tap, bot):
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == bot and m.state is ContainerState.RUNNING,
                 what=f"{bot} running")


class ConfigRuntime:
    """The one thing get_bot() needs from a Runtime: the config naming the control endpoint."""

    def __init__(self, config):
        self.config = config


def handle(fleet, bot, timeout=None):
    config = load_config(fleet.config_path)
    return BotContainer(config.bot(bot), ConfigRuntime(config), config.supervisor.server_name).get_bot(timeout)


def test_ping_and_status_describe_the_supervisor_and_each_bot(fleet_factory, launch):
    fleet = fleet_factory(["b1", "b2"])
    service, tap = launch(fleet)
    running(tap, "b1"), running(tap, "b2")
    pong = service.control("ping")
    assert pong["pid"] == service.pid and pong["server"] == "test"
    status = service.control("status", {"bots": ["b2"]})
    assert [b["bot_id"] for b in status["bots"]] == ["b2"]
    row = status["bots"][0]
    assert row["container_state"] == "running" and row["pid"] == hello_of(tap, "b2").pid
    for key in ("uptime", "restarts", "last_heartbeat", "connection_attempts", "events_total", "events_lost",
                "rss", "cpu", "reason", "is_healthy", "bot_status"):
        assert key in row, key
    with pytest.raises(ControlError, match="no such bot: nope"):
        service.control("status", {"bots": ["nope"]})


def test_handle_sends_sets_presence_and_marks_read_through_the_worker(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    online(tap, "b1")
    with handle(fleet, "b1") as bot:
        sent = bot.send_message("15550001111@s.whatsapp.net", "hello there")
        echoed = tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT
                              and m.data.from_me, what="the sent message on the tap")
        assert echoed.data.id == sent["message_id"] and echoed.data.text == "hello there" and sent["state"] == "sent"
        assert bot.set_presence("composing") == {"presence": "composing"}
        typing = bot.set_presence("composing", chat="15550001111")
        assert typing == {"presence": "composing", "chat": "15550001111@s.whatsapp.net"}
        shown = tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.PRESENCE_UPDATE
                             and m.data.chat is not None, what="the chat presence on the tap")
        assert shown.data.chat == "15550001111@s.whatsapp.net"
        assert bot.mark_read("15550001111@s.whatsapp.net", ["A", "B"]) == {"chat": "15550001111@s.whatsapp.net",
                                                                           "read": ["A", "B"]}
        with pytest.raises(ControlError, match="presence must be one of") as info:
            bot.set_presence("dancing")
        assert info.value.code == "worker-error"
        history = bot.history(limit=3)
        assert len(history) == 3 and history[-1]["type"] in {t.value for t in EventType}


def test_history_returns_the_last_events_oldest_first(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "simulated": {"message_rate": 50.0}}])
    service, tap = launch(fleet)
    for _ in range(5):
        tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT,
                     what="a message", history=False)
    events = service.control("history", {"bot": "b1", "limit": 4})["events"]
    assert len(events) == 4
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    everything = service.control("history", {"bot": "b1"})["events"]
    assert everything[-4:][0]["timestamp"] <= events[0]["timestamp"]
    assert everything[0]["type"] == "connection-update" and everything[0]["data"]["connection"] == "connecting"
    for bad in ({"bot": "b1", "limit": 0}, {"bot": "b1", "limit": "3"}, {"limit": 3}):
        with pytest.raises(ControlError) as info:
            service.control("history", bad)
        assert info.value.code == "bad-request"
    with pytest.raises(UnknownBot):
        service.control("history", {"bot": "zz"})


def test_logout_answers_then_the_container_fails_and_is_not_restarted(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    online(tap, "b1")
    pid = hello_of(tap, "b1").pid
    with handle(fleet, "b1") as bot:
        assert bot.logout()["exiting"] is True
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.state is ContainerState.FAILED,
                          what="b1 failed after logout")
    assert "logged-out" in failed.reason
    assert not (fleet.bot_dir("b1") / "creds.json").exists(), "the session must be gone"
    with pytest.raises(BotNotRunning, match="failed, not running"):
        handle(fleet, "b1").send_text("x@s.whatsapp.net", "hi")
    assert service.control("status")["bots"][0]["pid"] is None and pid


def test_unknown_bot_stopped_bot_and_unconnected_bot_are_clear_errors(fleet_factory, launch):
    fleet = fleet_factory(["b1", {"id": "quiet", "autostart": False},
                           {"id": "unpaired", "simulated": {"paired": False, "pair_after": 1000}}])
    service, tap = launch(fleet)
    running(tap, "unpaired")
    with pytest.raises(UnknownBot, match="no bot 'ghost'"):
        handle(fleet, "b1").client.call("send", {"bot": "ghost", "to": "a", "text": "b"})
    with pytest.raises(BotNotRunning, match="quiet is stopped"):
        handle(fleet, "quiet").send_text("15550001111", "hi")
    with pytest.raises(ControlError, match="not connected") as info:
        handle(fleet, "unpaired").send_text("15550001111@s.whatsapp.net", "hi")
    # the worker's answer (not paired), never the supervisor's "its worker is not connected":
    # a command waits for a live worker's command socket (supervisor/calls.py)
    assert info.value.code == "worker-error", info.value
    with pytest.raises(ControlError, match="'to' and 'text'"):
        service.control("send", {"bot": "b1", "to": "", "text": "x"})
    with pytest.raises(ControlError, match="'timeout'"):
        service.control("send", {"bot": "b1", "to": "a", "text": "x", "timeout": -1})
    with pytest.raises(ControlError, match="unknown command 'explode'") as info:
        service.control("explode")
    assert info.value.code == "unknown-command"
    # backup is forwarded to the worker, which backs its own session up
    made = handle(fleet, "b1").backup()
    assert made["stamp"] and (fleet.bot_dir("b1") / made["store"].rsplit("/", 1)[-1]).is_file()


def test_a_stopped_worker_times_out_with_an_error_while_status_stays_fast(fleet_factory, launch):
    fleet = fleet_factory(["b1", "b2"], heartbeat_timeout=60.0, command_timeout=0.5)
    service, tap = launch(fleet)
    online(tap, "b1")
    pid = hello_of(tap, "b1").pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with handle(fleet, "b1") as bot:
            started = time.monotonic()
            with pytest.raises(CommandTimeout, match="did not answer 'send' within 0.5 s"):
                bot.send_text("15550001111@s.whatsapp.net", "anyone?")
            assert time.monotonic() - started < 3.0
            # meanwhile the supervisor's loop is free: status, and a second command, answer at once
            with ControlClient(fleet.endpoint("control"), timeout=2) as client:
                started = time.monotonic()
                client.call("status")
                assert time.monotonic() - started < 0.5
            with pytest.raises(CommandTimeout):
                bot.set_presence("available")
    finally:
        os.kill(pid, signal.SIGCONT)
    with handle(fleet, "b1") as bot:  # the late replies were dropped: the next answer is the right one
        assert bot.set_presence("paused") == {"presence": "paused"}


def test_reload_says_applied_or_refused_with_the_reason(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    pid = hello_of(tap, "b1").pid
    fleet.bots.append({"id": "b2", "backend": "simulated"})
    fleet.write()
    result = service.control("reload")
    assert result["applied"] is True and "1 added" in result["message"]
    hello_of(tap, "b2")
    fleet.config_path.write_text(fleet.config_path.read_text() + "\n[[bots]]\nid = 'bad id!'\n")
    with pytest.raises(ControlError, match="reload refused.*bad id") as info:
        service.control("reload")
    assert info.value.code == "refused"
    tap.wait_for(lambda m: isinstance(m, Notice) and "refused" in m.message, what="the refusal on the tap")
    bots = {b["bot_id"]: b for b in service.control("status")["bots"]}
    assert bots["b1"]["pid"] == pid and set(bots) == {"b1", "b2"}


def raw_exchange(endpoint: str, frames: list[bytes], timeout: float = 3.0) -> list[bytes]:
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        assert sock.poll(int(timeout * 1000)), f"no reply to {frames!r}"
        return sock.recv_multipart()
    finally:
        sock.close(0)


@pytest.mark.parametrize("payload, echoed_id", [
    (b"\xc1garbage", ""),
    (b"", ""),
    (msgpack.packb([1, 2, 3]), ""),
    (msgpack.packb({"v": 1, "command": "status"}), ""),  # no id
    (msgpack.packb({"v": 1, "id": "r1", "command": 7}), "r1"),  # wrong type
    (msgpack.packb({"v": 1, "id": "r2", "command": "status", "args": [1]}), "r2"),
    (msgpack.packb({"v": 99, "id": "r3", "command": "status"}), "r3"),
    (msgpack.packb({"v": 1, "id": "r4", "command": "status", "extra": 1}), "r4"),
])
def test_malformed_requests_get_an_error_reply_and_the_supervisor_keeps_serving(fleet_factory, launch, payload,
                                                                                echoed_id):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    reply = decode_reply(raw_exchange(fleet.endpoint("control"), [payload])[-1])
    assert not reply.ok and "malformed request" in reply.error
    assert reply.id == echoed_id and reply.result == {"code": "bad-request"}
    assert service.control("ping")["pid"] == service.pid


def test_requests_with_an_envelope_and_wrong_argument_types_are_answered(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    # a REQ-style envelope (empty delimiter) is kept and sent back
    frames = raw_exchange(fleet.endpoint("control"), [b"", encode_request(Request("e1", "ping", {}))])
    assert frames[0] == b"" and decode_reply(frames[-1]).ok
    for command, args in [("start", {"bots": "b1"}), ("stop", {}), ("status", {"bots": [1]}),
                          ("send", {"bot": 5}), ("mark_read", {"bot": "b1", "chat": "c", "message_ids": []}),
                          ("presence", {"bot": "b1"})]:
        reply = decode_reply(raw_exchange(fleet.endpoint("control"),
                                          [encode_request(Request("x", command, args))])[-1])
        assert not reply.ok and reply.id == "x" and reply.error, (command, args)
    assert service.proc.poll() is None


def test_no_supervisor_is_a_clear_not_running_error(fleet_factory):
    fleet = fleet_factory(["b1"])
    with pytest.raises(NotRunning, match="no supervisor is running"):
        handle(fleet, "b1").send_text("a", "b")
    with pytest.raises(NotRunning):
        ControlClient(fleet.endpoint("control"), timeout=0.5).call("status")


def test_a_supervisor_that_went_away_is_not_running_for_a_client_that_knew_it(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    client = ControlClient(fleet.endpoint("control"), timeout=1.0)
    assert client.call("ping")["pid"] == service.pid
    service.signal(signal.SIGTERM)
    assert service.wait(10) == 0
    with pytest.raises(NotRunning):
        client.call("ping")
    client.close()
