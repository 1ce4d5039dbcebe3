"""The worker's memory of recent messages: bounded in count and in the bytes of raw objects."""

from __future__ import annotations

import pytest

from protocol import MessageUpsert
from worker.errors import CommandError
from worker.recent import RecentMessages


class Raw:
    def __init__(self, size: int) -> None:
        self.size = size

    def ByteSize(self) -> int:  # noqa: N802 (protobuf's name)
        return self.size


def message(i: int, kind: str = "message") -> MessageUpsert:
    return MessageUpsert(id=f"M{i}", chat="c", sender="s", timestamp=0.0, from_me=False, kind=kind)  # type: ignore[arg-type]


def test_the_oldest_messages_are_forgotten_past_the_capacity_with_a_clear_error():
    recent = RecentMessages(capacity=3)
    for i in range(5):
        recent.add(message(i))
    assert len(recent) == 3 and recent.get("M1") is None and recent.get("M4") is not None
    with pytest.raises(CommandError, match="argument 'quote': unknown message id 'M0'"):
        recent.require("M0", "quote")
    recent.add(message(9, kind="reaction"))
    assert recent.get("M9") is None, "a reaction is never the target of another action"


def test_raw_objects_past_the_byte_budget_are_dropped_oldest_first_and_the_messages_stay():
    recent = RecentMessages(capacity=100, raw_budget=250)
    for i in range(4):
        recent.add(message(i), Raw(100))
    assert recent.raw_bytes <= 250
    assert [recent.get(f"M{i}").raw is not None for i in range(4)] == [False, False, True, True]
    assert all(recent.get(f"M{i}") is not None for i in range(4))
    recent.add(message(3), Raw(10))  # the same id again replaces its entry and its bytes
    assert recent.raw_bytes == 110
