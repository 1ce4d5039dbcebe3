"""The neonize backend through neonize's own dispatch (tests/neonize_scenarios.py, each scenario
in a fresh interpreter): real serialised protobufs into ``Event.execute``, the QR and login
status through the callbacks Go calls, connect failures as whatsmeow handles them, the
client's lifetime, and the file descriptors a failed dial leaks."""

from __future__ import annotations

import pytest

from .harness import run_scenario

pytestmark = pytest.mark.slow


def run(scenario: str) -> dict:
    return run_scenario("tests.neonize_scenarios", scenario, timeout=120)


def test_every_mapped_event_arrives_through_neonizes_dispatch_and_is_subscribed():
    result = run("dispatch")
    # what connect() hands Go as the subscription list: without it whatsmeow's events never leave Go
    assert result["subscribed"] == result["expected"] and len(result["subscribed"]) >= 20
    got = {r["sent"] + str(i): r["got"] for i, r in enumerate(result["results"])}
    by_sent = [r["got"] for r in result["results"]]
    assert all(by_sent), f"an event reached no handler: {got}"
    connected, reply, reaction, receipt, presence, typing, offer, terminate, group, joined, history, drop, back = by_sent
    assert connected[0] == {"event": "ConnectionUpdate", "connection": "open", "attempt": 1}
    assert reply[0]["quoted"] == {"id": "3EB0Q", "sender": "1@s.whatsapp.net"} and reply[0]["text"] == "pong?"
    assert (reaction[0]["kind"], reaction[0]["target_id"], reaction[0]["emoji"]) == ("reaction", "3EB0GO", "x")
    assert receipt[0] == {"event": "ReceiptUpdate", "chat": "15550001111@s.whatsapp.net",
                          "sender": "15550001111@s.whatsapp.net", "message_ids": ["3EB0GO"], "type": "read",
                          "timestamp": 1_764_100_000.0, "is_group": False}
    assert presence[0] == {"event": "PresenceUpdate", "jid": "15550001111@s.whatsapp.net", "presence": "unavailable"}
    assert typing[0]["presence"] == "composing"
    assert (offer[0]["state"], offer[0]["call_id"], offer[0]["caller"]) == ("offer", "CALL1",
                                                                            "15550001111@s.whatsapp.net")
    assert (terminate[0]["state"], terminate[0]["reason"]) == ("terminate", "done")
    assert (group[0]["action"], group[0]["participants"]) == ("join", ["15550001111@s.whatsapp.net"])
    assert joined[0]["group"] == "120363000000000002@g.us"
    assert history[0]["event"] == "HistorySync"
    assert drop[0]["connection"] == "close" and back[0]["connection"] == "open"


def test_the_qr_code_reaches_the_bot_through_neonizes_qr_callback_and_nothing_reaches_fd_1():
    result = run("qr")
    assert result["qr"] == ["2@ref,noise,ident,adv"] and result["png"]
    assert result["fd1"] == "", "neonize's default QR handler prints the code to the terminal"


def test_connect_failures_end_the_worker_as_whatsmeow_does_not_reconnect():
    result = run("connect_failure")
    generic = result["generic"]
    assert (generic["ended"], generic["code"], generic["exit_code"]) == ("BotCrash", "connect-failure", 70), generic
    rejected = result["bad_user_agent"]
    assert (rejected["ended"], rejected["code"], rejected["exit_code"]) == ("FatalBotError", "client-rejected", 78)
    unknown = result["unencodable_ban"]
    assert (unknown["ended"], unknown["code"], unknown["exit_code"]) == ("FatalBotError", "unknown-failure", 78), \
        "a ban code neonize cannot encode must not be read as a dial failure and redialled"


def test_an_unused_pairing_ends_each_life_and_the_last_of_pairing_lives_fails():
    lives = run("pairing_timeout")["lives"]
    assert [(life["ended"], life["code"]) for life in lives] == [
        ("BotCrash", "pairing-timeout"), ("BotCrash", "pairing-timeout"), ("FatalBotError", "pairing-timeout")]
    assert "life 1 of pairing_lives = 3" in lives[0]["message"] and "life 3 of" in lives[2]["message"]
    assert lives[0]["last"][-1]["reason"].startswith("pairing timed out")
    assert not any(life["qr_png_left"] for life in lives), "a stale QR image must not stay to be scanned"


def test_an_owned_client_is_never_stopped_by_the_garbage_collector():
    result = run("gc")
    assert result["unowned"] == [result["main"]], "the hazard: neonize's finalizer stops Go on the collecting thread"
    assert result["owned"] == [] and result["finalizer_alive"] is False
    assert result["released"] == ["neonize-stop"], "release stops the client on a thread of its own"


def test_each_failed_dial_leaks_two_fds_and_the_life_ends_before_they_pile_up():
    result = run("fds")
    counts = result["counts"]
    assert [b - a for a, b in zip(counts, counts[1:])] == [2] * (len(counts) - 1), counts
    end = result["end"]
    assert (end["ended"], end["code"]) == ("BotCrash", "dial-limit"), end


def test_the_operations_build_real_neonize_messages_and_offline_errors_name_the_operation():
    result = run("operations")
    offline = result["offline"]
    for name in ("check_numbers", "group_info", "user_info", "subscribe_presence", "reject_call", "download", "send"):
        assert offline[name].startswith(f"CommandError: {name} failed: "), offline[name]
    reply, image, voice, document, reaction, edit, revoke = [s["message"] for s in result["sent"]]
    context = reply["extendedTextMessage"]["contextInfo"]
    assert (context["stanzaID"], context["participant"]) == ("3EB0IN0", "15550001111@s.whatsapp.net")
    assert context["quotedMessage"] == {"conversation": "ping"}
    assert context["mentionedJID"] == ["15550002222@s.whatsapp.net"]
    assert image["imageMessage"]["caption"] == "cat" and image["imageMessage"]["directPath"] == "/v/up"
    assert image["imageMessage"]["contextInfo"]["stanzaID"] == "3EB0IN0"
    assert voice["audioMessage"]["PTT"] is True
    assert document["documentMessage"]["fileName"] == "c.png"
    assert reaction["reactionMessage"]["key"]["ID"] == "3EB0IN0" and reaction["reactionMessage"]["text"] == "👍"
    assert edit["editedMessage"]["message"]["protocolMessage"]["type"] == "MESSAGE_EDIT"
    assert revoke["protocolMessage"] == {"key": {"remoteJID": "15550001111@s.whatsapp.net", "fromMe": True,
                                                 "ID": "3EB0OUT1"}, "type": "REVOKE"}
    kinds = [(e["kind"], e.get("message_type")) for e in result["echoes"]]
    assert kinds == [("message", "text"), ("message", "image"), ("message", "voice"), ("message", "document"),
                     ("reaction", "reaction"), ("edit", "text"), ("revoke", "revoke")]
    assert result["echoes"][1]["quoted"]["id"] == "3EB0IN0"


def test_network_calls_run_on_the_io_thread_and_their_results_reach_the_reply():
    """A slow upload / SendMessage / IsOnWhatsApp of a real client: the operation returns at once, the
    call runs on the worker's I/O thread (never the loop's), the loop keeps coming round meanwhile
    (so it would keep beating), and the call's result is the operation's result."""
    result = run("offloop")
    loop, delay = result["loop_thread"], result["delay"]
    assert [c["call"] for c in result["calls"]] == ["send_message", "upload", "send_message", "is_on_whatsapp"]
    assert all(c["thread"] == "neonize-io" for c in result["calls"]), (loop, result["calls"])
    for name, got in result["results"].items():
        assert got["pending"], f"{name} ran its network call inline, on the loop's thread"
        assert got["returned_in"] < delay / 2, f"{name} held the loop for {got['returned_in']:.2f} s"
        assert got["turns"] >= 5 and got["longest_turn"] < delay / 2, (name, got)
    send, media, numbers = (result["results"][n]["value"] for n in ("send", "send_media", "check_numbers"))
    assert send["id"] == "3EB0SLOW1" and send["to"] == "15550001111@s.whatsapp.net"
    assert media["id"] == "3EB0SLOW3"
    assert numbers == {"results": [{"query": "15550001111", "jid": "15550001111@s.whatsapp.net", "on_whatsapp": True}]}
    assert result["echoes"] == ["3EB0SLOW1", "3EB0SLOW3"], "the echo of each send is published when it is done"
