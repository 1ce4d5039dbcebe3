"""Topic strings: ``<server>.<bot>.<kind>`` and, for events, ``<server>.<bot>.event.<type>``.

Server names and bot ids never contain '.', so a prefix selects exactly what it names:
``prod.`` one supervisor, ``prod.bot1.`` one bot (the trailing dot keeps bot10 out),
``prod.bot1.event.message-upsert`` one event type of one bot.
"""

from __future__ import annotations

from .events import EventType
from .messages import KIND_OF, Event, Kind, Message

MAX_TOPIC_BYTES = 256
#: the single-frame message a tap receives when its subscription reaches the supervisor
#: (only taps subscribed to everything, b"", see it; it is not a Message)
WELCOME = b"botvisor.welcome"


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
