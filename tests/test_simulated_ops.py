"""The WhatsApp operations on the simulated backend, in-process: what they send (the echo and
SimulatedBackend.sent), what they return, and the model they keep (media, groups, calls)."""

from __future__ import annotations

import hashlib
import logging
import time

import pytest

from protocol import CallUpdate, MessageUpsert, PresenceUpdate
from protocol.config import BotConfig, SimulatedSettings
from worker.backends.base import BackendContext
from worker.backends.simulated import SimulatedBackend
from worker.commands import OPERATIONS
from worker.errors import CommandError

ALICE = "15550001111@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


@pytest.fixture
def bot(tmp_path):
    emitted: list = []
    knobs = SimulatedSettings(unregistered=["15550009999"])
    ctx = BackendContext(bot=BotConfig(id="b1", simulated=knobs), bot_dir=tmp_path / "bot", emit=emitted.append,
                         log=logging.getLogger("test"))
    ctx.bot_dir.mkdir()
    backend = SimulatedBackend(ctx)
    backend.start(time.monotonic())
    backend.poll(time.monotonic() + 1)
    return backend, emitted


def op(backend, name, **args):
    return OPERATIONS[name](backend, args)


def test_a_reply_quotes_the_message_and_mentions_reach_the_echo(bot):
    backend, emitted = bot
    ping = op(backend, "simulate", **{"from": "15550001111", "text": "ping"})
    reply = op(backend, "send", to=ALICE, text="pong @15550001111", quote=ping["id"], mentions=["15550001111"])
    echo = emitted[-1]
    assert echo.from_me and echo.id == reply["id"] and echo.quoted.id == ping["id"] and echo.quoted.text == "ping"
    assert echo.mentions == [ALICE]
    assert backend.sent[-1] == {"op": "send", "to": ALICE, "text": "pong @15550001111", "quote": ping["id"],
                                "mentions": [ALICE], "message_id": reply["id"], "timestamp": reply["timestamp"]}


def test_media_sent_or_received_downloads_into_the_bot_dir_with_the_same_bytes(bot, tmp_path):
    backend, emitted = bot
    photo = tmp_path / "cat.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    got = op(backend, "simulate", **{"from": "15550001111", "media": {"kind": "image", "path": str(photo)},
                                     "text": "a cat"})
    received = emitted[-1]
    assert received.media.kind == "image" and received.media.sha256 == hashlib.sha256(photo.read_bytes()).hexdigest()
    saved = op(backend, "download", message_id=got["id"])
    assert saved["path"].startswith(str(backend.ctx.bot_dir / "media")) and saved["path"].endswith(".png")
    assert open(saved["path"], "rb").read() == photo.read_bytes() and saved["size"] == photo.stat().st_size
    by_fields = op(backend, "download", media={"kind": "image", "direct_path": received.media.direct_path,
                                               "media_key": received.media.media_key})
    assert by_fields["sha256"] == received.media.sha256
    sent = op(backend, "send_media", to=ALICE, kind="document", path=str(photo), file_name="cat.png", caption="doc")
    assert emitted[-1].media.file_name == "cat.png" and emitted[-1].text == "doc"
    assert backend.sent[-1]["op"] == "send_media" and backend.sent[-1]["message_id"] == sent["id"]
    assert open(op(backend, "download", message_id=sent["id"])["path"], "rb").read() == photo.read_bytes()


def test_react_edit_and_revoke_are_echoed_as_their_kind(bot):
    backend, emitted = bot
    mine = op(backend, "send", to=ALICE, text="helo")
    op(backend, "react", chat=ALICE, message_id=mine["id"], emoji="👍")
    assert (emitted[-1].kind, emitted[-1].target_id, emitted[-1].emoji) == ("reaction", mine["id"], "👍")
    op(backend, "edit", chat=ALICE, message_id=mine["id"], text="hello")
    assert (emitted[-1].kind, emitted[-1].text) == ("edit", "hello")
    op(backend, "revoke", chat=ALICE, message_id=mine["id"])
    assert (emitted[-1].kind, emitted[-1].target_id) == ("revoke", mine["id"])
    assert [s["op"] for s in backend.sent] == ["send", "react", "edit", "revoke"]


def test_numbers_users_groups_presence_and_calls(bot):
    backend, emitted = bot
    checked = op(backend, "check_numbers", numbers=["+1 555 000 1111", "15550009999"])
    assert checked["results"] == [
        {"query": "15550001111", "jid": ALICE, "on_whatsapp": True},
        {"query": "15550009999", "jid": None, "on_whatsapp": False}]
    assert [u["jid"] for u in op(backend, "user_info", jids=[ALICE, "15550009999"])["users"]] == [ALICE]
    with pytest.raises(CommandError, match="not in group"):
        op(backend, "group_info", group=GROUP)
    op(backend, "simulate", kind="group", group=GROUP, action="join", participants=["15550001111", "15550002222"])
    op(backend, "simulate", kind="group", group=GROUP, action="promote", participants=["15550002222"])
    op(backend, "simulate", kind="group", group=GROUP, action="subject", subject="Shop")
    info = op(backend, "group_info", group=GROUP)
    assert info["subject"] == "Shop"
    roles = {p["jid"]: p["is_admin"] for p in info["participants"]}
    assert roles == {ALICE: False, "15550002222@s.whatsapp.net": True, backend.me: False}
    op(backend, "subscribe_presence", jid=ALICE)
    assert emitted[-1] == PresenceUpdate(jid=ALICE, presence="available")
    call = op(backend, "simulate", kind="call", **{"from": "15550001111"})
    assert isinstance(emitted[-1], CallUpdate) and emitted[-1].state == "offer"
    with pytest.raises(CommandError, match="'caller'"):
        op(backend, "reject_call", call_id=call["id"], caller="15550002222")
    assert op(backend, "reject_call", call_id=call["id"], caller=ALICE)["rejected"]
    with pytest.raises(CommandError, match="no incoming call"):
        op(backend, "reject_call", call_id=call["id"], caller=ALICE)


def test_receipts_and_group_messages_as_a_bot_receives_them(bot):
    backend, emitted = bot
    mine = op(backend, "send", to=ALICE, text="hi")
    op(backend, "simulate", kind="receipt", message_ids=[mine["id"]], type="read", **{"from": "15550001111"})
    assert (emitted[-1].type, emitted[-1].message_ids) == ("read", [mine["id"]])
    op(backend, "simulate", **{"from": "15550002222", "group": GROUP, "text": "hey"})
    got = emitted[-1]
    assert isinstance(got, MessageUpsert) and got.is_group and got.chat == GROUP
    with pytest.raises(CommandError, match="'sender'"):
        op(backend, "mark_read", chat=GROUP, message_ids=["UNSEEN"])
    assert op(backend, "mark_read", chat=GROUP, message_ids=[got.id])["read"] == [got.id]


def test_a_script_plays_its_messages_in_order_once_the_session_opens(tmp_path):
    emitted: list = []
    script = [{"at": 0.2, "from": "15550001111", "text": "second"}, {"at": 0.1, "from": "15550001111", "text": "first"},
              {"at": 0.3, "from": "15550001111", "group": GROUP, "text": "third"}]
    ctx = BackendContext(bot=BotConfig(id="b1", simulated=SimulatedSettings(script=script)), bot_dir=tmp_path,
                         emit=emitted.append, log=logging.getLogger("test"))
    backend = SimulatedBackend(ctx)
    t0 = time.monotonic()
    backend.start(t0)
    due = backend.poll(t0 + 0.06)  # opened (connect_delay 0.05): the script's clock starts
    texts = []
    now = t0 + 0.06
    while due is not None and now < t0 + 1:
        now = max(now, due)
        due = backend.poll(now)
        texts = [e.text for e in emitted if isinstance(e, MessageUpsert)]
        if len(texts) == 3:
            break
    assert texts == ["first", "second", "third"]
    assert emitted[-1].is_group


@pytest.mark.parametrize("phone", [None, "15551234567"])
def test_pairing_by_phone_number_shows_one_pair_code_after_the_first_qr(tmp_path, phone):
    """As the neonize backend: with phone_number set, an unpaired bot asks for a pair code once the
    first QR proves the link, and the code is shown once per life; without it, QR codes only."""
    emitted: list = []
    knobs = SimulatedSettings(paired=False, pair_after=None, qr_every=0.5)
    ctx = BackendContext(bot=BotConfig(id="p1", phone_number=phone, simulated=knobs), bot_dir=tmp_path / "bot",
                         emit=emitted.append, log=logging.getLogger("test"))
    ctx.bot_dir.mkdir()
    backend = SimulatedBackend(ctx)
    start = time.monotonic()
    backend.start(start)
    for step in range(8):  # four QR refreshes
        backend.poll(start + step * 0.26)
    qrs = [e.qr for e in emitted if getattr(e, "qr", None)]
    codes = [e.pair_code for e in emitted if getattr(e, "pair_code", None)]
    assert len(qrs) >= 3 and len(set(qrs)) == len(qrs)
    if phone is None:
        assert codes == []
    else:
        assert len(codes) == 1 and len(codes[0]) == 9 and codes[0][4] == "-"
        first_qr = next(i for i, e in enumerate(emitted) if getattr(e, "qr", None))
        assert next(i for i, e in enumerate(emitted) if getattr(e, "pair_code", None)) == first_qr + 1


def test_the_sends_a_simulated_bot_remembers_are_bounded_the_newest_kept(bot, monkeypatch):
    # a bot replying for days would otherwise keep every reply: the newest SENT_KEPT stay
    from worker.backends import simulated

    monkeypatch.setattr(simulated, "SENT_KEPT", 5)
    backend = SimulatedBackend(bot[0].ctx)  # made with the small bound
    backend.start(time.monotonic())
    backend.poll(time.monotonic() + 1)
    for i in range(8):
        op(backend, "send", to=ALICE, text=f"reply {i}")
    assert [s["text"] for s in backend.sent] == [f"reply {i}" for i in range(3, 8)]
