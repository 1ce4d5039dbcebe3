"""Offline injection into the simulated backend (`simulate`): what a bot receives, what it sent,
and message ids that never repeat across worker lives. In-process backends, then the real
supervisor and CLI end to end."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol import BotStatus, Event, EventType, MessageUpsert
from protocol.config import BotConfig
from worker.backends.base import BackendContext
from worker.backends.simulated import SimulatedBackend
from worker.commands import OPERATIONS
from worker.errors import CommandError

from .harness import REPO


def online_backend(bot_dir: Path, emitted: list) -> SimulatedBackend:
    ctx = BackendContext(bot=BotConfig(id="b1"), bot_dir=bot_dir, emit=emitted.append,
                         log=logging.getLogger("test"))
    backend = SimulatedBackend(ctx)
    now = time.monotonic()
    backend.start(now)
    backend.poll(now + 1.0)  # past connect_delay: open
    assert backend.status is BotStatus.ONLINE
    return backend


def test_simulate_injects_private_and_group_messages_as_message_upserts(tmp_path):
    emitted: list = []
    backend = online_backend(tmp_path, emitted)
    private = OPERATIONS["simulate"](backend, {"from": "+1 555 000 1111", "text": "ping"})
    assert private["event"] == "message-upsert"
    event = emitted[-1]
    assert isinstance(event, MessageUpsert) and event.id == private["id"]
    assert (event.chat, event.sender, event.text, event.from_me, event.is_group, event.kind) == (
        "15550001111@s.whatsapp.net", "15550001111@s.whatsapp.net", "ping", False, False, "message")
    group = OPERATIONS["simulate"](backend, {"from": "15550002222", "group": "120363000000000001@g.us",
                                             "text": "hello all"})
    event = emitted[-1]
    assert (event.chat, event.sender, event.is_group, group["data"]["text"]) == (
        "120363000000000001@g.us", "15550002222@s.whatsapp.net", True, "hello all")
    assert group["id"] != private["id"]


@pytest.mark.parametrize("args, named", [
    ({"text": "no sender"}, "'from'"),
    ({"from": "not a number", "text": "x"}, "'from'"),
    ({"from": "15550001111"}, "'text'"),
    ({"from": "15550001111", "text": "x", "group": "15550001111@s.whatsapp.net"}, "'group'"),
    ({"kind": "teleport", "from": "15550001111"}, "'kind'"),
    ({"kind": "reaction", "from": "15550001111", "target": "NOPE", "emoji": "x"}, "'target'"),
])
def test_simulate_refuses_bad_arguments_naming_the_argument(tmp_path, args, named):
    backend = online_backend(tmp_path, [])
    with pytest.raises(CommandError, match=named):
        OPERATIONS["simulate"](backend, args)


def test_sent_records_what_the_bot_sent_as_plain_dicts(tmp_path):
    emitted: list = []
    backend = online_backend(tmp_path, emitted)
    reply = backend.send_text("15550001111@s.whatsapp.net", "pong")
    assert list(backend.sent) == [{"op": "send", "to": "15550001111@s.whatsapp.net", "text": "pong",
                             "message_id": reply["id"], "timestamp": reply["timestamp"]}]
    assert emitted[-1].from_me and emitted[-1].id == reply["id"]
    chosen = backend.send_text("15550001111@s.whatsapp.net", "again", message_id="3EB0CHOSEN")
    assert chosen["id"] == "3EB0CHOSEN" and backend.sent[-1]["message_id"] == "3EB0CHOSEN"


def test_message_ids_stay_unique_across_worker_lives(tmp_path):
    seen: set[str] = set()
    for _life in range(3):
        backend = online_backend(tmp_path, [])
        for _ in range(3):
            seen.add(backend.simulate({"from": "15550001111", "text": "x"})["id"])
            seen.add(backend.send_text("15550001111@s.whatsapp.net", "y")["id"])
    assert len(seen) == 18


def test_simulate_on_a_neonize_bot_is_a_clear_error():
    from worker.backends.base import Backend

    class Real(Backend):  # the base class's answer, which the neonize backend inherits
        name = "neonize"
        start = poll = send_text = set_presence = mark_read = logout = lambda *a, **k: None

    with pytest.raises(CommandError, match="simulate needs the simulated backend; this bot runs neonize"):
        OPERATIONS["simulate"](Real.__new__(Real), {"from": "1555", "text": "x"})


def cli(fleet, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", args[0], "-c", str(fleet.config_path), *args[1:]],
                          cwd=REPO, capture_output=True, text=True, timeout=30)


def test_botvisor_simulate_delivers_a_message_the_tap_sees(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "open", what="b1 online")
    done = cli(fleet, "simulate", "b1", "--from", "15550001111", "--text", "ping")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("b1: injected message-upsert SIM")
    got = tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT and not m.data.from_me,
                       what="the injected message")
    assert got.data.text == "ping" and got.data.id in done.stdout
    grouped = cli(fleet, "simulate", "b1", "--from", "15550002222", "--group", "120363000000000001@g.us",
                  "--text", "all")
    assert grouped.returncode == 0, grouped.stderr
    tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT and m.data.is_group,
                 what="the group message")
    bad = cli(fleet, "simulate", "b1", "--from", "nobody", "--text", "x")
    assert bad.returncode == 1 and "argument 'from'" in bad.stderr


def test_an_unused_pairing_ends_the_life_and_pairing_lives_later_the_bot_fails(fleet_factory, launch):
    from protocol import Bye, ContainerState, StateChange

    fleet = fleet_factory([{"id": "p1", "simulated": {"paired": False, "pair_after": 3600.0, "qr_every": 0.05,
                                                      "pairing_timeout": 0.3},
                            "whatsapp": {"pairing_lives": 2}}],
                          backoff={"initial": 0.05, "jitter": 0.0})
    service, tap = launch(fleet)
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "p1" and m.state is ContainerState.FAILED,
                          timeout=20, what="p1 failed after its pairing lives")
    byes = [m for m in tap.seen if isinstance(m, Bye) and m.bot == "p1"]
    assert [(b.reason, b.exit_code) for b in byes] == [("pairing-timeout", 70), ("pairing-timeout", 78)]
    closes = [m for m in tap.seen if isinstance(m, Event) and m.bot == "p1" and m.type is EventType.CONNECTION_UPDATE
              and m.data.connection == "close"]
    assert all(c.data.reason.startswith("pairing timed out") for c in closes) and len(closes) == 2
    assert "pairing-timeout" in failed.reason and "life 2 of pairing_lives = 2" in failed.reason
    assert any(isinstance(m, Event) and m.bot == "p1" and m.data.__class__.__name__ == "ConnectionUpdate"
               and m.data.qr for m in tap.seen), "QR codes were shown before they ran out"


def test_the_operations_through_the_cli_and_the_real_supervisor(fleet_factory, launch, tmp_path):
    import json as _json

    fleet = fleet_factory([{"id": "b1", "messages_per_minute": 6000}])
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "open", what="b1 online")
    photo = tmp_path / "cat.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 100)
    got = cli(fleet, "simulate", "b1", "--from", "15550001111", "--media", f"image:{photo}", "--caption", "cat",
              "--json")
    assert got.returncode == 0, got.stderr
    message_id = _json.loads(got.stdout)["id"]
    saved = cli(fleet, "download", "b1", message_id)
    assert saved.returncode == 0, saved.stderr
    path = _json.loads(saved.stdout)["path"]
    assert open(path, "rb").read() == photo.read_bytes()
    reply = cli(fleet, "send", "b1", "15550001111", "nice cat", "--quote", message_id)
    assert reply.returncode == 0, reply.stderr
    echo = tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT and m.data.from_me,
                        what="the reply's echo")
    assert echo.data.quoted.id == message_id
    reacted = cli(fleet, "react", "b1", "15550001111", message_id, "❤")
    assert reacted.returncode == 0, reacted.stderr
    numbers = _json.loads(cli(fleet, "check-numbers", "b1", "15550001111").stdout)
    assert numbers["results"][0]["on_whatsapp"] is True
    missing = cli(fleet, "send-media", "b1", "15550001111", "image", str(tmp_path / "nope.png"))
    assert missing.returncode == 1 and "argument 'path': no such file" in missing.stderr
    unknown = cli(fleet, "react", "b1", "15550001111", "NOPE", "x")
    assert unknown.returncode == 1 and "unknown message id 'NOPE'" in unknown.stderr
