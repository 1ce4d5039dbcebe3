"""Bot apps through the real supervisor and workers: answering, failing, hanging, surviving a
SIGKILL, reloads, --watch and broken apps. Every message is injected with `simulate` and every
wait is on a tap message or a control reply, bounded."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from protocol import ContainerState, ErrorEvent, Event, EventType, Heartbeat, Hello, MessageUpsert, StateChange

from .harness import REPO

pytestmark = pytest.mark.slow

PINGPONG = '''
import threading
from botvisor import Bot, filters

bot = Bot()

@bot.on_message(filters.equals("ping"))
def pong(ctx):
    ctx.reply(ctx.config.get("answer", "pong"))

@bot.on_message(filters.equals("boom"))
def boom(ctx):
    raise ValueError("boom on purpose")

@bot.on_message(filters.equals("hang"))
def hang(ctx):
    threading.Event().wait()  # a plain function blocked for good: cannot be cancelled
'''


#: the machine is shared: a 1.5 s heartbeat timeout and workers at the supervisor's priority keep
#: a busy neighbour from passing for a hang
TIMING = {"heartbeat_interval": 0.5, "nice": 0}


def app_bot(bot_id: str, app: str = "app.py:bot", **extra: Any) -> dict[str, Any]:
    return {"id": bot_id, "app": app, "messages_per_minute": 6000, **extra}


def answering(service, tap, bot: str, pid: int, answer: str = "pong") -> None:
    """The app in worker ``pid`` is loaded and answers (a connection open says nothing of the app)."""
    online(tap, bot, pid)
    simulate(service, bot, "ping")
    tap.wait_for(lambda m: is_reply(bot, answer)(m) and m.pid == pid, timeout=15, what=f"{bot} answering {answer}")


def write_app(fleet, name: str = "app.py", source: str = PINGPONG) -> Path:
    path = fleet.root / name
    path.write_text(textwrap.dedent(source))
    return path


def is_reply(bot: str, text: str):
    return lambda m: (isinstance(m, Event) and m.bot == bot and isinstance(m.data, MessageUpsert)
                      and m.data.from_me and m.data.text == text)


def is_error(bot: str, code: str):
    return lambda m: isinstance(m, Event) and m.bot == bot and isinstance(m.data, ErrorEvent) and m.data.code == code


def hello_after(tap, bot: str, pid: int, timeout: float = 15) -> Hello:
    """The hello of the worker that followed worker ``pid`` of ``bot``."""
    seen = tap.seen
    start = next(i for i, m in enumerate(seen) if isinstance(m, Hello) and m.pid == pid)
    for m in seen[start + 1:]:
        if isinstance(m, Hello) and m.bot == bot:
            return m
    return tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == bot and m.pid != pid, timeout=timeout,
                        what=f"the hello of the worker after {bot}'s pid {pid}", history=False)


def first_online(tap, bot: str) -> int:
    """The pid of the first worker of ``bot`` whose session opened (an overloaded machine may have
    replaced a worker that was slow to start: it is not the subject of these tests)."""
    opened = tap.wait_for(lambda m: isinstance(m, Event) and m.bot == bot and m.type is EventType.CONNECTION_UPDATE
                          and m.data.connection == "open", timeout=30, what=f"{bot} online")
    return opened.pid


def online(tap, bot: str, pid: int) -> None:
    tap.wait_for(lambda m: isinstance(m, Event) and m.bot == bot and m.pid == pid
                 and m.type is EventType.CONNECTION_UPDATE and m.data.connection == "open",
                 timeout=15, what=f"{bot} (pid {pid}) online")


def simulate(service, bot: str, text: str, sender: str = "15551230001") -> dict[str, Any]:
    return service.control("simulate", {"bot": bot, "from": sender, "text": text})


def test_an_app_answers_an_injected_ping_seen_on_the_tap_and_in_history(fleet_factory, launch):
    fleet = fleet_factory([app_bot("b1")], **TIMING)
    write_app(fleet)
    service, tap = launch(fleet)
    pid = first_online(tap, "b1")
    injected = simulate(service, "b1", "ping")
    reply = tap.wait_for(is_reply("b1", "pong"), timeout=10, what="the app's pong")
    assert reply.data.chat == "15551230001@s.whatsapp.net" and reply.pid == pid
    assert reply.data.quoted is None or reply.data.quoted.id == injected["id"]
    history = service.control("history", {"bot": "b1"})["events"]
    texts = [(e["data"].get("text"), e["data"].get("from_me")) for e in history if e["type"] == "message-upsert"]
    assert ("ping", False) in texts and ("pong", True) in texts


def test_a_raising_handler_gives_an_error_event_and_the_bot_keeps_answering(fleet_factory, launch):
    fleet = fleet_factory([app_bot("b1")], **TIMING)
    write_app(fleet)
    service, tap = launch(fleet)
    pid = first_online(tap, "b1")
    simulate(service, "b1", "boom", sender="15550009999")
    error = tap.wait_for(is_error("b1", "handler-error"), timeout=10, what="the handler-error event").data
    assert error.handler.endswith(".boom") and error.chat == "15550009999@s.whatsapp.net"
    assert error.exception == "ValueError" and "boom on purpose" in error.message
    assert "ValueError" in error.traceback and not error.fatal
    simulate(service, "b1", "ping")
    reply = tap.wait_for(is_reply("b1", "pong"), timeout=10, what="a pong after the error")
    assert reply.pid == pid, "the same worker keeps running"


SLOW = PINGPONG + '''
import asyncio, time

@bot.on_message(filters.equals("crunch"))
def crunch(ctx):  # pure-Python CPU work for 3 s: holds the GIL as much as it is let
    end = time.monotonic() + 3
    while time.monotonic() < end:
        sum(range(1000))
    ctx.reply("crunched")

@bot.on_message(filters.equals("wait"))
async def wait(ctx):
    await asyncio.sleep(3)
    await ctx.reply("waited")
'''


def test_slow_handlers_never_stop_the_heartbeats_and_other_chats_go_on(fleet_factory, launch):
    fleet = fleet_factory([app_bot("b1", handler_timeout=10)], **TIMING)  # heartbeat_timeout 1.5 s
    write_app(fleet, source=SLOW)
    service, tap = launch(fleet)
    pid = first_online(tap, "b1")
    answering(service, tap, "b1", pid)
    started = time.monotonic()
    simulate(service, "b1", "crunch", sender="15550000001")
    simulate(service, "b1", "wait", sender="15550000002")
    simulate(service, "b1", "ping", sender="15550000003")
    quick = tap.wait_for(lambda m: is_reply("b1", "pong")(m) and m.data.chat.startswith("15550000003"), timeout=10,
                         what="another chat's answer while two handlers work")
    assert time.monotonic() - started < 3, "a chat waits for nobody else's handler"
    for text in ("crunched", "waited"):
        reply = tap.wait_for(is_reply("b1", text), timeout=15, what=f"the slow handler's {text!r}")
        assert reply.pid == pid
    assert quick.pid == pid
    beats = [m.ts for m in tap.seen if isinstance(m, Heartbeat) and m.pid == pid and m.ts >= quick.ts - 0.5]
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert beats and max(gaps) < 1.5, f"heartbeats kept coming while the handlers worked (largest gap {max(gaps):.2f} s)"
    assert {b["bot_id"]: b for b in service.control("status")["bots"]}["b1"]["pid"] == pid


def test_a_handler_blocked_for_good_gets_the_worker_replaced_within_the_bound(fleet_factory, launch):
    timeout, interval = 0.4, TIMING["heartbeat_interval"]
    fleet = fleet_factory([app_bot("b1", handler_timeout=timeout)], **TIMING)
    write_app(fleet)
    service, tap = launch(fleet)
    first = first_online(tap, "b1")
    sent_at = time.monotonic()
    simulate(service, "b1", "hang")
    tap.wait_for(is_error("b1", "handler-timeout"), timeout=10, what="the handler-timeout event")
    stuck = tap.wait_for(is_error("b1", "app-stuck"), timeout=10, what="the app-stuck event").data
    assert ".hang" in stuck.message and "15551230001@s.whatsapp.net" in stuck.message
    second = hello_after(tap, "b1", first)
    elapsed = time.monotonic() - sent_at
    heartbeat_timeout = 3 * interval
    bound = 2 * timeout + heartbeat_timeout + 1.0  # docs/apps.md, "Supervision"
    assert elapsed < bound, f"replaced after {elapsed:.2f} s, bound {bound:.2f} s"
    online(tap, "b1", second.pid)
    simulate(service, "b1", "ping")
    reply = tap.wait_for(is_reply("b1", "pong"), timeout=10, what="a pong from the replacement")
    assert reply.pid == second.pid
    status = {b["bot_id"]: b for b in service.control("status")["bots"]}["b1"]
    assert status["restarts"] >= 1 and status["container_state"] == "running"
    crashed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is ContainerState.BACKOFF
                           and m.last_exit == "exit 70 (crash)", timeout=1, what="the stuck worker's crash exit")
    assert crashed.seq > 0


def test_an_app_that_fails_to_import_leaves_the_bot_failed_with_the_reason_and_no_restart(fleet_factory, launch):
    fleet = fleet_factory([app_bot("b1"), {"id": "plain"}], **TIMING)
    app = write_app(fleet)
    service, tap = launch(fleet)
    first = first_online(tap, "b1")
    answering(service, tap, "b1", first)
    app.write_text("from botvisor import Bot\nbot = Bot()\nraise RuntimeError('the database is gone')\n")
    service.control("restart", {"bots": ["b1"]})  # loads the app's current code
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is ContainerState.FAILED,
                          timeout=15, what="b1 failed")
    assert "the database is gone" in failed.reason and "app.py:3" in failed.reason, failed.reason
    fatal = tap.wait_for(is_error("b1", "app-import-failed"), timeout=5, what="the import error").data
    assert fatal.fatal and fatal.file and fatal.file.endswith("app.py")
    failed_at = tap.seen.index(failed)
    time.sleep(1.0)  # a restart loop would show a new hello within this (first restarts are immediate)
    later = [m.pid for m in tap.seen[failed_at:] if isinstance(m, Hello) and m.bot == "b1"]
    assert later == [], f"no worker is started after the bot failed: {later}"
    status = {b["bot_id"]: b for b in service.control("status")["bots"]}
    assert status["b1"]["container_state"] == "failed" and "the database is gone" in status["b1"]["reason"]
    assert status["plain"]["container_state"] == "running", "the other bot is untouched"


def test_a_dialog_in_progress_survives_a_sigkill_of_the_worker(fleet_factory, launch):
    fleet = fleet_factory([app_bot("b1", app=str(REPO / "examples" / "dialog.py") + ":bot")], **TIMING)
    service, tap = launch(fleet)
    first = first_online(tap, "b1")
    simulate(service, "b1", "/order")
    tap.wait_for(is_reply("b1", "Which pizza would you like?"), timeout=10, what="the first question")
    simulate(service, "b1", "margherita")
    tap.wait_for(is_reply("b1", "And the delivery address?"), timeout=10, what="the second question")
    os.kill(first, signal.SIGKILL)
    second = hello_after(tap, "b1", first)
    online(tap, "b1", second.pid)
    simulate(service, "b1", "Main Street 1")
    reply = tap.wait_for(is_reply("b1", "One margherita to Main Street 1: on its way!"), timeout=10,
                         what="the dialog finished by the new worker")
    assert reply.pid == second.pid


def test_reload_restarts_exactly_the_bots_whose_app_or_app_config_changed(fleet_factory, launch):
    bots = [app_bot("a"), app_bot("b", app_config={"answer": "pong"}), app_bot("c"), {"id": "d"}]
    fleet = fleet_factory(bots, **TIMING)
    write_app(fleet)
    write_app(fleet, "other.py", PINGPONG.replace('"pong"', '"other pong"'))
    service, tap = launch(fleet)
    pids = {bot: first_online(tap, bot) for bot in "abcd"}
    for bot in "abc":
        answering(service, tap, bot, pids[bot])
    fleet.bots[0]["app"] = "other.py:bot"
    fleet.bots[1]["app_config"] = {"answer": "changed"}
    fleet.write()
    result = service.control("reload")
    assert result["applied"], result
    new = {bot: hello_after(tap, bot, pids[bot]).pid for bot in "ab"}
    for bot in "ab":
        online(tap, bot, new[bot])
    simulate(service, "a", "ping")
    tap.wait_for(is_reply("a", "other pong"), timeout=10, what="a runs its new app")
    simulate(service, "b", "ping")
    tap.wait_for(is_reply("b", "changed"), timeout=10, what="b runs with its new app_config")
    restarted = {m.bot for m in tap.seen if isinstance(m, StateChange) and m.reason == "configuration changed"}
    assert restarted == {"a", "b"}, f"the reload restarted {sorted(restarted)}; unchanged bots keep their worker"


def test_reload_with_a_broken_app_keeps_the_fleet_and_says_why(fleet_factory, launch):
    fleet = fleet_factory([app_bot("a")], **TIMING)
    write_app(fleet)
    (fleet.root / "broken.py").write_text("from botvisor import Bot\nbot = 42\n")
    service, tap = launch(fleet)
    pid = first_online(tap, "a")
    fleet.bots[0]["app"] = "broken.py:bot"
    fleet.write()
    from protocol.client import ControlError

    with pytest.raises(ControlError, match="not a botvisor Bot"):
        service.control("reload")
    assert {s["bot_id"]: s for s in service.control("status")["bots"]}["a"]["pid"] == pid


def test_watch_restarts_a_bot_when_its_app_file_is_edited(fleet_factory, launch):
    fleet = fleet_factory([app_bot("b1"), {"id": "plain"}], **TIMING)
    app = write_app(fleet)
    service, tap = launch(fleet, args=["--watch"])
    first = first_online(tap, "b1")
    plain = first_online(tap, "plain")
    answering(service, tap, "b1", first)
    time.sleep(0.3)  # the watcher thread starts its inotify watch right after the fleet
    edited_at = time.monotonic()
    app.write_text(textwrap.dedent(PINGPONG).replace('"pong"', '"edited pong"'))
    second = hello_after(tap, "b1", first, timeout=10)
    elapsed = time.monotonic() - edited_at
    assert elapsed < 1.5, f"the bot restarted {elapsed:.2f} s after the edit"
    online(tap, "b1", second.pid)
    simulate(service, "b1", "ping")
    tap.wait_for(is_reply("b1", "edited pong"), timeout=10, what="the edited app's answer")
    status = {s["bot_id"]: s for s in service.control("status")["bots"]}
    assert status["plain"]["pid"] == plain


def test_an_app_whose_on_start_fails_leaves_the_bot_failed_with_the_reason(fleet_factory, launch):
    fleet = fleet_factory([app_bot("b1")], **TIMING)
    write_app(fleet, source=PINGPONG + '''
@bot.on_start
def connect(ctx):
    raise ConnectionError("no route to the orders database")
''')
    service, tap = launch(fleet)
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is ContainerState.FAILED,
                          timeout=20, what="b1 failed")
    assert "app-start-failed" in failed.reason and "no route to the orders database" in failed.reason
    failed_at = tap.seen.index(failed)
    time.sleep(1.0)
    assert not [m for m in tap.seen[failed_at:] if isinstance(m, Hello) and m.bot == "b1"], "no restart loop"
    status = {b["bot_id"]: b for b in service.control("status")["bots"]}["b1"]
    assert status["container_state"] == "failed" and "ConnectionError" in status["reason"]
