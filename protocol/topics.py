"""Topic strings: ``<server>.<bot>.<kind>`` and, for events, ``<server>.<bot>.event.<type>``.

Server names and bot ids never contain '.', so a prefix selects exactly what it names:
``prod.`` one supervisor, ``prod.bot1.`` one bot (the trailing dot keeps bot10 out),
``prod.bot1.event.message-upsert`` one event type of one bot.
"""

from __future__ import annotations

from typing import Any

from .events import EventType
from .messages import KIND_OF, Event, Kind, Message

MAX_TOPIC_BYTES = 256
#: the single-frame message a tap receives when its subscription reaches the supervisor
#: (only taps subscribed to everything, b"", see it; it is not a Message)
WELCOME = b"botvisor.welcome"
#: how often a tap tries again to reach a supervisor that is not there (ms), with no backoff.
#: PUB/SUB keeps nothing for a subscriber not yet connected, and a restarted supervisor (a shard
#: after a SIGKILL) publishes its bots' first state changes 0.5-1 s after it binds: with libzmq's
#: backoff to 1 s a tap came back after them and missed most or all of them.
#: An attempt at a missing ipc socket or a closed port costs one refused connect.
TAP_RECONNECT_MS = 100


def rejoin_quickly(sock: Any) -> None:
    """A tap's SUB socket: retry a missing supervisor every TAP_RECONNECT_MS, never slower."""
    import zmq

    sock.setsockopt(zmq.RECONNECT_IVL, TAP_RECONNECT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)  # 0: no exponential backoff


def topic_for(message: Message) -> str:
    kind = KIND_OF[type(message)]
    if isinstance(message, Event):
        return f"{message.server}.{message.bot}.{kind}.{message.type}"
    return f"{message.server}.{message.bot}.{kind}"


def bot_prefix(server: str, bot: str) -> str:
    return f"{server}.{bot}."


def event_prefix(server: str, bot: str, event_type: EventType | str) -> str:
    return f"{server}.{bot}.{Kind.EVENT}.{event_type}"


def split(topic: str) -> tuple[str, str, str]:
    """``(server, bot, rest)`` of a topic; ``rest`` is the kind and, for events, the type."""
    server, bot, rest = (topic.split(".", 2) + ["", ""])[:3]
    return server, bot, rest
