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
    assert backend.sent == [{"op": "send", "to": "15550001111@s.whatsapp.net", "text": "pong",
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
