"""The supervisor's own counters (``status`` -> ``stats``; docs/control.md lists them).

Every counter is reported, zeros included: an absent key would read as "not counted".
"""

from __future__ import annotations

from collections import Counter

#: name -> what it counts
COUNTERS = {
    "rejected": "messages dropped on the events endpoint, all reasons",
    "rejected_frames": "... not [topic, payload, signature]",
    "rejected_topic": "... whose topic is not UTF-8",
    "rejected_signature": "... not signed by the bot's current worker (forged, or for an unknown bot)",
    "rejected_malformed": "... signed but not a valid protocol message",
    "rejected_command_reply": "malformed replies on the commands socket",
    "stale": "valid messages from a worker already replaced (its last words)",
    "tap_dropped": "messages at least one tap missed because its queue (tap_queue) was full",
    "internal_errors": "supervisor handler errors caught and logged (a bug: please report it)",
}


def snapshot(stats: Counter[str]) -> dict[str, int]:
    """Every known counter (0 when nothing happened), then any other the supervisor counted."""
    return {**{name: stats.get(name, 0) for name in COUNTERS}, **stats}
