"""Gap counting on numbered streams: how a receiver knows what it lost.

Each worker numbers its messages from 0 (``seq``), so a stream is (bot, pid). The
supervisor's state messages are numbered per bot, its notices per supervisor. A receiver
that sees seq jump from 4 to 9 lost 4 messages: never silently.
"""

from __future__ import annotations

from typing import Hashable

from .messages import Message, Notice, StateChange


def stream_of(message: Message) -> Hashable:
    kind = type(message)
    if kind is not StateChange and kind is not Notice:  # worker traffic, nearly all of it
        return (message.server, message.bot, message.pid)
    if kind is StateChange:
        return (message.server, message.bot, "state")
    if isinstance(message, Notice):
        return (message.server, "notice")
    return (message.server, message.bot, message.pid)


class SequenceTracker:
    """Per-stream expected seq; ``observe`` returns how many messages were skipped.

    With ``from_zero`` every stream must start at seq 0 (the supervisor, which saw the worker
    start); without it, the first message seen starts the count (a tap joining mid-stream).
    """

    def __init__(self, *, from_zero: bool = False) -> None:
        self.from_zero = from_zero
        self._expected: dict[Hashable, int] = {}
        self.lost = 0

    def observe(self, message: Message) -> int:
        key = stream_of(message)
        seq = message.seq
        expected = self._expected.get(key, 0 if self.from_zero else seq)
        if seq < expected:  # a repeat or a reordering: nothing lost, the count goes on
            return 0
        self._expected[key] = seq + 1
        gap = seq - expected
        if gap:
            self.lost += gap
        return gap
