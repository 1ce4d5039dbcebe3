"""botvisor.testing and the app runtime under it: scheduling, errors, timeouts, the context."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from botvisor import Bot, OperationError, filters
from botvisor.testing import AppTester


def test_sync_and_async_handlers_reply_and_the_kit_reads_what_was_sent():
    bot = Bot()

    @bot.on_message(filters.equals("sync"))
    def plain(ctx):
        result = ctx.reply("from a function")
        assert result["id"], "a plain handler gets the operation's result"

    @bot.on_message(filters.equals("async"))
    async def coro(ctx):
        result = await ctx.reply("from a coroutine")
        assert result["id"]

    with AppTester(bot) as t:
        incoming = t.say("sync", sender="15557654321")
        t.say("async", sender="15557654321")
        assert t.replies() == ["from a function", "from a coroutine"]
        assert t.replies(chat="15557654321") == t.replies() and t.replies(chat="15550000009") == []
        first = t.sent[0]
        assert first["op"] == "send" and first["to"] == "15557654321@s.whatsapp.net" and first["message_id"]
        assert t.errors == []


def test_reply_quotes_the_message_and_send_goes_anywhere():
    bot = Bot()

    @bot.on_message(filters.equals("hi"))
    async def hi(ctx):
        await ctx.reply("hello")
        await ctx.send("15550000042", "someone said hi")

    with AppTester(bot) as t:
        incoming = t.say("hi")
        reply, forward = t.sent
        assert reply["to"] == incoming.chat and reply["text"] == "hello"
        assert reply.get("quote") == incoming.id, reply
        assert forward["to"] == "15550000042@s.whatsapp.net"


def test_one_chat_in_order_different_chats_concurrently():
    bot = Bot()
    order: list[str] = []
    gate = threading.Event()

    @bot.on_message(filters.equals("wait"))
    def waiting(ctx):  # blocks its chat until another chat's handler opens the gate
        assert gate.wait(5), "another chat's handler should have run meanwhile"
        order.append("released")

    @bot.on_message(filters.equals("open"))
    def opener(ctx):
        gate.set()

    @bot.on_message(filters.regex(r"^n(\d)$"))
    async def numbered(ctx):
        await asyncio.sleep(0.01 * (5 - int(ctx.match[1])))  # later ones are quicker: order must still hold
        order.append(ctx.text)

    with AppTester(bot) as t:
        t.say("wait", sender="15550000001", wait=False)
        for i in range(5):
            t.say(f"n{i}", sender="15550000001", wait=False)  # queued behind "wait" in the same chat
        t.say("open", sender="15550000002")
        t.settle()
        assert order == ["released", "n0", "n1", "n2", "n3", "n4"]


def test_a_raising_handler_gives_an_error_the_on_error_hook_sees_and_the_bot_keeps_going():
    bot = Bot()
    hooked = []

    @bot.on_message(filters.equals("boom"))
    def boom(ctx):
        raise ValueError("no such pizza")

    @bot.on_message(filters.equals("ping"))
    def ping(ctx):
        ctx.reply("pong")

    @bot.on_error
    def on_error(ctx):
        hooked.append(ctx.error)

    with AppTester(bot) as t:
        t.say("boom", sender="15551112222")
        assert len(hooked) == 1, "say() returns after the on_error hook has run too"
        t.say("ping")
        assert t.replies() == ["pong"]
        (error,) = t.errors
        assert error.code == "handler-error" and error.exception == "ValueError"
        assert error.handler.endswith("boom") and error.chat == "15551112222@s.whatsapp.net"
        assert "no such pizza" in error.message and "raise ValueError" in error.traceback
        (seen,) = hooked
        assert seen.type == "ValueError" and seen.handler == error.handler and isinstance(seen.exception, ValueError)


def test_a_handler_past_its_timeout_gives_an_error_and_an_async_one_is_cancelled():
    bot = Bot()
    cancelled = threading.Event()

    @bot.on_message(filters.equals("slow"))
    async def slow(ctx):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @bot.on_message(filters.equals("ping"))
    async def ping(ctx):
        await ctx.reply("pong")

    with AppTester(bot, handler_timeout=0.2) as t:
        started = time.monotonic()
        t.say("slow")
        assert time.monotonic() - started < 3
        (error,) = t.errors
        assert error.code == "handler-timeout" and error.handler.endswith("slow") and error.chat
        assert cancelled.is_set()
        t.say("ping")
        assert t.replies() == ["pong"], "the chat moves on after a cancelled handler"
        assert t.runtime.stuck(time.monotonic()) is None


def test_a_plain_handler_that_never_ends_makes_the_app_stuck():
    bot = Bot()
    forever = threading.Event()

    @bot.on_message(filters.equals("hang"))
    def hang(ctx):
        forever.wait(30)

    t = AppTester(bot, handler_timeout=0.1)
    t.start()
    try:
        t.say("hang", wait=False)
        deadline = time.monotonic() + 5
        while t.runtime.stuck(time.monotonic()) is None:
            assert time.monotonic() < deadline, "no stuck verdict"
            time.sleep(0.02)
        reason = t.runtime.stuck(time.monotonic())
        assert "hang" in reason and "stuck" in reason
        assert [e.code for e in t.errors] == ["handler-timeout"]
    finally:
        forever.set()
        t.close()


def test_on_start_failure_is_raised_and_on_start_and_on_stop_run():
    bad = Bot()

    @bad.on_start
    def start(ctx):
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        AppTester(bad).start()

    good = Bot()
    calls = []
    good.on_start(lambda ctx: calls.append("start"))
    good.on_stop(lambda ctx: calls.append("stop"))
    with AppTester(good) as t:
        assert calls == ["start"]
        t.restart()
        assert calls == ["start", "stop", "start"]
        t.restart(crash=True)
        assert calls == ["start", "stop", "start", "start"], "a crash runs no on_stop"
    assert calls[-1] == "stop"


def test_context_config_is_read_only_and_missing_operations_say_which():
    bot = Bot()
    seen = {}

    @bot.on_message()
    def handler(ctx):
        seen["greeting"] = ctx.config["greeting"]
        seen["bot_id"] = ctx.bot_id
        with pytest.raises(TypeError):
            ctx.config["greeting"] = "changed"  # type: ignore[index]
        assert ctx.config["admins"] == ("15550000001",)
        with pytest.raises(OperationError, match="no_such_op"):
            ctx.call("no_such_op")
        ctx.log.info("handled %s", ctx.text)

    with AppTester(bot, bot_id="shop", app_config={"greeting": "hi", "admins": ["15550000001"]}) as t:
        t.say("x")
        assert seen == {"greeting": "hi", "bot_id": "shop"} and t.errors == []


def test_typing_mark_read_and_react_reach_the_session():
    bot = Bot()

    @bot.on_message()
    async def handler(ctx):
        await ctx.typing(2)
        await ctx.mark_read()
        await ctx.react("👍")

    with AppTester(bot) as t:
        before = t.clock.time()
        t.say("hello")
        assert t.errors == []
        ops = [c for c in t.calls]
        assert [c["op"] for c in ops] == ["presence", "presence", "mark_read", "react"]
        assert ops[0]["presence"] == "composing" and ops[1]["presence"] == "paused"
        assert t.clock.time() - before >= 2, "typing(2) advanced the kit's clock instead of sleeping"
        assert any(s["op"] == "react" for s in t.sent)


def test_events_other_than_messages_reach_on_handlers():
    bot = Bot()
    seen = []

    @bot.on("connection-update")
    def connection(ctx):
        seen.append(ctx.event.connection)

    with AppTester(bot) as t:
        assert "open" in seen, "the session's own open reached the app"
        t.connection("close", reason="test")
        assert seen[-1] == "close"


def test_a_reply_to_a_message_the_backend_forgot_goes_out_unquoted():
    from worker.app.ops import run_for_app
    from worker.errors import CommandError

    with AppTester(Bot()) as t:
        args = {"to": "15551230001", "text": "late answer", "quote": "SIM-FORGOTTEN"}
        with pytest.raises(CommandError, match="quote"):
            run_for_app(t.backend, "send", dict(args))  # a plain send insists on its quote
        result = run_for_app(t.backend, "send", {**args, "quote_if_known": True})  # what ctx.reply asks
        assert result and t.sent[-1]["text"] == "late answer" and not t.sent[-1].get("quote")
        known = t.say("hello")
        run_for_app(t.backend, "send", {**args, "quote": known.id, "quote_if_known": True})
        assert t.sent[-1].get("quote") == known.id, "a message it knows is quoted"


def test_restarting_an_app_in_the_kit_frees_its_loop_and_files_and_it_still_answers():
    import os

    bot = Bot()

    @bot.on_message(filters.startswith("still"))
    def echo(ctx):
        ctx.reply("answered")

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with AppTester(bot) as t:
        t.restart()  # the first restart's one-time costs (imports, pools) out of the count
        before = open_fds()
        for i in range(10):
            t.restart(crash=bool(i % 2))  # on request and as after a SIGKILL
        grown = open_fds() - before
        t.say("still here")
        assert t.replies()[-1] == "answered"
    assert grown <= 2, f"{grown} file descriptors more after 10 restarts: each left its loop behind"
