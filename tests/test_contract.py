"""tests/contract.py against both backends: the simulated one in-process, the neonize one
through neonize's dispatch in a fresh interpreter. Same arguments, same answers."""

from __future__ import annotations

import logging
import time

import pytest

from protocol import BotStatus
from protocol.config import BotConfig, WhatsAppSettings
from worker.backends.base import BackendContext
from worker.backends.simulated import SimulatedBackend

from .contract import run_contract
from .test_neonize_dispatch import run


def simulated_contract(tmp_path) -> dict:
    emitted: list = []
    ctx = BackendContext(bot=BotConfig(id="b1", whatsapp=WhatsAppSettings(media_max_mb=1)), bot_dir=tmp_path,
                         emit=emitted.append, log=logging.getLogger("contract"))
    backend = SimulatedBackend(ctx)
    backend.start(time.monotonic())
    backend.poll(time.monotonic() + 1)
    first: list[str] = []

    def receive(kind: str, group: bool):
        args = {"from": "15550001111", "text": "ping"}
        if group:
            args["group"] = "120363000000000001@g.us"
        if kind == "reply":
            args.update(text="pong?", quote=first[0])
        elif kind in ("reaction", "revoke", "edit"):
            args = {"kind": kind, "from": "15550001111", "target": first[0],
                    **({"emoji": "👍"} if kind == "reaction" else {"text": "ping!"} if kind == "edit" else {})}
        result = backend.simulate(args)
        if not first:
            first.append(result["id"])
        return emitted[-1]

    def set_online(online: bool) -> None:
        backend.status = BotStatus.ONLINE if online else BotStatus.LOADING

    return run_contract(backend, receive, set_online)


@pytest.fixture(scope="module")
def neonize_contract() -> dict:
    return run("contract")


def test_both_backends_refuse_bad_arguments_with_the_same_error_naming_the_argument(tmp_path, neonize_contract):
    simulated = simulated_contract(tmp_path)
    assert simulated["results"] == neonize_contract["results"]
    errors = {(op, text) for op, outcome, text in simulated["results"]}
    assert all(outcome == "error" for _, outcome, _ in simulated["results"]), simulated["results"]
    for op, named in [("send_media", "'to'"), ("send_media", "'kind'"), ("send_media", "absolute path"),
                      ("send_media", "no such file"), ("send_media", "media limit"), ("send_media", "'caption'"),
                      ("react", "unknown message id"), ("react", "'emoji'"), ("edit", "not sent by this bot"),
                      ("revoke", "'message_id'"), ("download", "has no media"), ("download", "'media'"),
                      ("check_numbers", "'numbers'"), ("check_numbers", "at most 50"), ("user_info", "'jids'"),
                      ("group_info", "'group'"), ("reject_call", "'call_id'"), ("subscribe_presence", "'jid'"),
                      ("mark_read", "'sender'"), ("send", "'quote'")]:
        assert any(o == op and named in text for o, text in errors), (op, named)


def test_both_backends_say_when_the_session_is_not_connected(tmp_path, neonize_contract):
    simulated = simulated_contract(tmp_path)
    assert simulated["offline"] == neonize_contract["offline"]
    assert all(text == "bot is loading, not connected" for _, _, text in simulated["offline"])


def test_both_backends_deliver_the_same_shapes(tmp_path, neonize_contract):
    simulated = simulated_contract(tmp_path)
    for key in ("received", "received_group", "reply", "reaction", "revoke", "edit"):
        assert simulated[key] == neonize_contract[key], key
    assert neonize_contract["reply"]["quoted"] == {"id": "<received id>", "sender": ALICE_JID, "text": "ping",
                                                   "message_type": "text"}


ALICE_JID = "15550001111@s.whatsapp.net"
