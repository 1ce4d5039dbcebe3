"""Filters, commands and the order handlers are tried in (botvisor.filters, botvisor.app)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from botvisor import AppDefinitionError, Bot, filters
from botvisor.app import matching
from botvisor.testing import AppTester
from protocol.events import MessageUpsert


def msg(text: str | None = "hi", *, chat: str = "15551230001@s.whatsapp.net", sender: str | None = None,
        group: bool = False, from_me: bool = False, message_type: str = "text", **extra) -> MessageUpsert:
    return MessageUpsert(id="M1", chat=chat, sender=sender or chat, timestamp=0.0, from_me=from_me, text=text,
                         message_type=message_type, is_group=group, **extra)


def ctx_for(message: MessageUpsert, state: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(message=message, event=message, match=None, dialog=SimpleNamespace(state=state),
                           text=message.text, command=None)


@pytest.mark.parametrize("flt, text, expected", [
    (filters.equals("ping"), "ping", True),
    (filters.equals("ping"), "  PING ", True),
    (filters.equals("ping", ignore_case=False), "PING", False),
    (filters.equals("ping"), "ping pong", False),
    (filters.equals("ping", "hello"), "hello", True),
    (filters.contains("order"), "I want to ORDER now", True),
    (filters.contains("order"), "hello", False),
    (filters.startswith("hey"), "Hey you", True),
    (filters.startswith("hey"), "oh hey", False),
    (filters.text, "", False),
    (filters.text, None, False),
    (filters.text, "x", True),
])
def test_text_filters(flt, text, expected):
    assert flt(ctx_for(msg(text))) is expected


def test_regex_leaves_its_match_for_the_handler():
    ctx = ctx_for(msg("pay 42 EUR"))
    assert filters.regex(r"pay (?P<amount>\d+) (?P<cur>[A-Z]{3})")(ctx)
    assert ctx.match["amount"] == "42" and ctx.match.group("cur") == "EUR"
    ctx = ctx_for(msg("nothing"))
    assert not filters.regex(re.compile(r"\d+"))(ctx) and ctx.match is None


def test_combinators_and_or_not():
    dm, grp = msg("hi"), msg("hi", chat="123@g.us", sender="1555@s.whatsapp.net", group=True)
    assert filters.private(ctx_for(dm)) and not filters.private(ctx_for(grp))
    assert filters.group(ctx_for(grp)) and not filters.group(ctx_for(dm))
    both = filters.text & filters.group
    assert both(ctx_for(grp)) and not both(ctx_for(dm))
    either = filters.equals("x") | filters.group
    assert either(ctx_for(grp)) and either(ctx_for(msg("x"))) and not either(ctx_for(dm))
    assert (~filters.group)(ctx_for(dm)) and not (~filters.group)(ctx_for(grp))
    assert "&" in both.name and "|" in either.name
    # a plain function of ctx combines too
    assert (filters.text & (lambda c: c.message.chat.endswith("@g.us")))(ctx_for(grp))


def test_chat_sender_from_me_type_media_and_state():
    m = msg("hi", chat="123@g.us", sender="15551230001@s.whatsapp.net", group=True)
    assert filters.chat("123@g.us")(ctx_for(m)) and not filters.chat("999@g.us")(ctx_for(m))
    assert filters.sender("+15551230001")(ctx_for(m)), "a phone number is made a JID"
    assert not filters.sender("15550000000")(ctx_for(m))
    assert filters.from_me(ctx_for(msg(from_me=True))) and not filters.from_me(ctx_for(msg()))
    assert filters.message_type("image")(ctx_for(msg(message_type="image")))
    assert not filters.message_type("image")(ctx_for(msg()))
    assert filters.media(ctx_for(msg(None, message_type="image"))) and not filters.media(ctx_for(msg()))
    assert filters.state("address")(ctx_for(msg(), state="address"))
    assert not filters.state("address")(ctx_for(msg(), state="pizza"))
    assert filters.state(None)(ctx_for(msg())) and filters.in_dialog(ctx_for(msg(), state="x"))
    assert not filters.in_dialog(ctx_for(msg()))


def test_a_filter_that_is_not_one_is_refused():
    with pytest.raises(TypeError, match="filter"):
        filters.text & 3  # noqa: B018


def test_command_parsing():
    bot = Bot()

    @bot.command("order", prefix="!/")
    def order(ctx):
        pass

    handler = bot.message_handlers[0]
    parsed = handler.parse_command("/order 2 large pizzas")
    assert parsed.name == "order" and parsed.prefix == "/" and parsed.args == ("2", "large", "pizzas")
    assert parsed.rest == "2 large pizzas"
    assert handler.parse_command("!ORDER").args == ()
    assert handler.parse_command("#order") is None, "a prefix not configured"
    assert handler.parse_command("/orders") is None, "another word"
    assert handler.parse_command("order") is None and handler.parse_command(None) is None


def test_decorators_refuse_mistakes():
    bot = Bot()
    with pytest.raises(AppDefinitionError, match="unknown event type"):
        bot.on("no-such-event")
    with pytest.raises(AppDefinitionError, match="one argument"):
        bot.on_message(filters.text)(lambda: None)
    with pytest.raises(AppDefinitionError, match="names"):
        bot.command()
    with pytest.raises(AppDefinitionError, match="kind"):
        bot.on_message(kind="poll")


def test_first_match_wins_in_registration_order_unless_continued():
    bot = Bot()
    seen: list[str] = []

    @bot.command("x")
    def cmd(ctx):
        seen.append("command")

    @bot.on_message(filters.contains("a"))
    def first(ctx):
        seen.append("first")
        if "go on" in ctx.text:
            ctx.continue_handling()

    @bot.on_message(filters.text)
    def second(ctx):
        seen.append("second")

    with AppTester(bot) as t:
        t.say("/x a")
        assert seen == ["command"], "the command was registered first and wins"
        seen.clear()
        t.say("a")
        assert seen == ["first"]
        seen.clear()
        t.say("a, go on")
        assert seen == ["first", "second"], "continue_handling runs the next matching handler"
        seen.clear()
        t.say("zzz")
        assert seen == ["second"]


def test_own_messages_reach_only_own_handlers_and_kinds_are_separate():
    bot = Bot()
    seen: list[str] = []

    @bot.on_message()
    def anything(ctx):
        seen.append(f"any:{ctx.text}")
        ctx.reply("echo")

    @bot.on_message(filters.from_me, own=True)
    def mine(ctx):
        seen.append(f"own:{ctx.text}")

    @bot.on_message(kind="reaction")
    def reaction(ctx):
        seen.append(f"reaction:{ctx.message.emoji}")

    with AppTester(bot) as t:
        first = t.say("hello")
        assert t.replies() == ["echo"], "the bot's own echo must not be answered again"
        assert "any:hello" in seen and "own:echo" in seen and "any:echo" not in seen
        t.simulate("reaction", **{"from": "15551230001", "target": first.id, "emoji": "👍"})
        assert "reaction:👍" in seen and seen.count("any:hello") == 1
