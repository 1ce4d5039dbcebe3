"""The messages a worker saw lately (received and sent), by id: what quote, react, edit, revoke
and download look up. Bounded, in memory: a message from before the worker started is unknown
here, and the operations say so (``download`` also takes a message's media fields instead).

Two bounds: ``capacity`` messages, and ``raw_budget`` bytes of the backends' own objects (the
neonize protobufs, which quoting and downloading by id need; a media message carries its
thumbnail). Past the budget the oldest raw objects are dropped first; their messages stay known.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from protocol import MessageUpsert

from .errors import CommandError

#: messages remembered per worker; the oldest is forgotten first
DEFAULT_CAPACITY = 2000
#: bytes of raw backend objects kept (neonize: serialised size of the protobufs)
DEFAULT_RAW_BUDGET = 4 * 1024 * 1024


@dataclass(slots=True)
class Seen:
    message: MessageUpsert
    #: the backend's own object for it (neonize: the protobuf Message event), or None
    raw: Any = None
    raw_bytes: int = 0


def _size(raw: Any) -> int:
    """A protobuf's serialised size; a partial one (our own sent messages) counts too."""
    partial = getattr(raw, "SerializePartialToString", None)
    if callable(partial):
        return len(partial())
    byte_size = getattr(raw, "ByteSize", None)
    return int(byte_size()) if callable(byte_size) else 0


class RecentMessages:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, raw_budget: int = DEFAULT_RAW_BUDGET) -> None:
        self.capacity, self.raw_budget = capacity, raw_budget
        self._items: OrderedDict[str, Seen] = OrderedDict()
        self.raw_bytes = 0

    def add(self, message: MessageUpsert, raw: Any = None) -> None:
        if message.kind != "message":
            return  # reactions, edits, revokes are never the target of another action
        old = self._items.pop(message.id, None)
        if old is not None:
            self.raw_bytes -= old.raw_bytes
        seen = Seen(message, raw, _size(raw) if raw is not None else 0)
        self._items[message.id] = seen
        self.raw_bytes += seen.raw_bytes
        while len(self._items) > self.capacity:
            self.raw_bytes -= self._items.popitem(last=False)[1].raw_bytes
        if self.raw_bytes > self.raw_budget:
            for item in self._items.values():  # oldest first
                if self.raw_bytes <= self.raw_budget:
                    break
                if item.raw is not None and item is not seen:
                    self.raw_bytes -= item.raw_bytes
                    item.raw, item.raw_bytes = None, 0

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
