"""The messages a worker saw lately (received and sent), by id: what quote, react, edit, revoke
and download look up. Bounded, in memory: a message from before the worker started is unknown
here, and the operations say so (``download`` also takes a message's media fields instead).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from protocol import MessageUpsert

from .errors import CommandError

#: messages remembered per worker; the oldest is forgotten first
DEFAULT_CAPACITY = 2000


@dataclass(frozen=True, slots=True)
class Seen:
    message: MessageUpsert
    #: the backend's own object for it (neonize: the protobuf Message event), or None
    raw: Any = None


class RecentMessages:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Seen] = OrderedDict()

    def add(self, message: MessageUpsert, raw: Any = None) -> None:
        if message.kind != "message":
            return  # reactions, edits, revokes are never the target of another action
        self._items[message.id] = Seen(message, raw)
        self._items.move_to_end(message.id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, message_id: str) -> Seen | None:
        return self._items.get(message_id)

    def require(self, message_id: str, key: str = "message_id") -> Seen:
        seen = self._items.get(message_id)
        if seen is None:
            raise CommandError(f"argument {key!r}: unknown message id {message_id!r} (this worker remembers the "
                               f"last {self.capacity} messages since it started)")
        return seen

    def __len__(self) -> int:
        return len(self._items)
