"""The examples in examples/, each tested through botvisor.testing as an app author would."""

from __future__ import annotations

from botvisor.testing import AppTester
from examples.commands import bot as commands_bot
from examples.dialog import bot as dialog_bot
from examples.pingpong import bot as pingpong_bot


def test_pingpong_answers_ping_and_counts():
    with AppTester(pingpong_bot) as t:
        t.say("ping")
        t.say(" PING")
        t.say("pong?")
        assert t.replies() == ["pong", "pong"]
        assert t.runtime.db is not None
        t.restart()
        t.say("ping")
        assert t.replies() == ["pong"] * 3


def test_commands_bot():
    with AppTester(commands_bot, app_config={"greeting": "Welcome"}) as t:
        t.say("/help")
        t.say("/sum 1 2 3.5")
        t.say("/sum one")
        t.say("!echo hello there")
        t.say("I'd like 2 coffees")
        t.say("/nonsense")
        assert t.replies() == ["Welcome! Commands: /echo TEXT, /sum NUMBERS...", "6.5", "usage: /sum 1 2 3",
                               "hello there", "2 coffee(s) coming up", "unknown command; try /help"]
        t.say("I'd like 2 coffees", group="120363000000000001@g.us")
        assert len(t.replies()) == 6, "the coffee handler answers in private chats only"


def test_two_step_dialog_survives_a_crash_and_times_out():
    with AppTester(dialog_bot) as t:
        t.say("/order")
        t.say("margherita")
        t.restart(crash=True)  # as a SIGKILL of the worker: no on_stop, the state is on disk
        t.say("Main Street 1")
        assert t.replies() == ["Which pizza would you like?", "And the delivery address?",
                               "One margherita to Main Street 1: on its way!"]
        t.say("/order", sender="15559990000")
        t.advance(301)  # the question expires after 5 minutes
        t.say("funghi", sender="15559990000")
        assert t.replies()[-1] == "Which pizza would you like?", "an expired dialog ignores the late answer"
        t.say("/order")
        t.say("/cancel")
        assert t.replies()[-1] == "Order cancelled."
