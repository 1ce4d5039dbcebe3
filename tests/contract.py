"""One contract, two backends: what the simulated and the neonize backend answer where the
network is not needed (argument errors, a session that is not connected, the shape of what a
bot receives). tests/test_contract.py runs it against both and requires the same answers.

``receive(kind, group)`` makes the backend deliver one incoming message the way it would
(simulate / a neonize protobuf through the backend's event handler) and returns its data.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable

from protocol.schema import to_mapping
from worker.commands import OPERATIONS

GROUP = "120363000000000001@g.us"
ALICE = "15550001111@s.whatsapp.net"


def _run(backend: Any, op: str, args: dict[str, Any]) -> list[str]:
    try:
        OPERATIONS[op](backend, args)
    except Exception as exc:  # CommandError: the text is the contract
        return ["error", str(exc)]
    return ["ok", ""]


def run_contract(backend: Any, receive: Callable[[str, bool], Any], set_online: Callable[[bool], None]) -> dict:
    received = receive("text", False)
    in_group = receive("text", True)
    text_id = received.id
    scratch = tempfile.mkdtemp(prefix="contract-")
    big = os.path.join(scratch, "big.bin")
    with open(big, "wb") as f:
        f.truncate(2 * 1024 * 1024)  # over media_max_mb = 1
    small = os.path.join(scratch, "cat.png")
    with open(small, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("send_media", {"to": "not a jid", "kind": "image", "path": small}),
        ("send_media", {"to": ALICE, "kind": "hologram", "path": small}),
        ("send_media", {"to": ALICE, "kind": "image", "path": "cat.png"}),
        ("send_media", {"to": ALICE, "kind": "image", "path": os.path.join(scratch, "missing.png")}),
        ("send_media", {"to": ALICE, "kind": "document", "path": big}),
        ("send_media", {"to": ALICE, "kind": "sticker", "path": small, "caption": "no"}),
        ("react", {"chat": ALICE, "message_id": "NOPE", "emoji": "x"}),
        ("react", {"chat": ALICE, "message_id": text_id, "emoji": 7}),
        ("edit", {"chat": ALICE, "message_id": text_id, "text": "not mine"}),
        ("revoke", {"chat": ALICE, "message_id": "NOPE"}),
        ("download", {"message_id": "NOPE"}),
        ("download", {"message_id": text_id}),
        ("download", {"media": {"kind": "image"}}),
        ("check_numbers", {"numbers": ["hello"]}),
        ("check_numbers", {"numbers": [str(15550000000 + i) for i in range(51)]}),
        ("user_info", {"jids": []}),
        ("group_info", {"group": "15550001111@s.whatsapp.net"}),
        ("reject_call", {"caller": ALICE}),
        ("subscribe_presence", {"jid": "x y"}),
        ("mark_read", {"chat": GROUP, "message_ids": ["UNSEEN"]}),
        ("send", {"to": ALICE, "text": "hi", "quote": "NOPE"}),
    ]
    results = [[op, outcome, text.replace(scratch, "<scratch>").replace(text_id, "<received id>")]
               for op, args in cases for outcome, text in [_run(backend, op, args)]]
    set_online(False)
    offline = [[op, *_run(backend, op, args)] for op, args in (
        ("check_numbers", {"numbers": ["15550001111"]}), ("group_info", {"group": GROUP}),
        ("subscribe_presence", {"jid": ALICE}), ("react", {"chat": ALICE, "message_id": text_id, "emoji": "x"}))]
    set_online(True)

    def shape(data: Any) -> dict:
        plain = {k: v for k, v in to_mapping(data).items() if k not in ("id", "timestamp", "push_name")}
        return json.loads(json.dumps(plain).replace(text_id, "<received id>"))

    return {"results": results, "offline": offline,
            "received": shape(received), "received_group": shape(in_group),
            "reply": shape(receive("reply", False)), "reaction": shape(receive("reaction", False)),
            "revoke": shape(receive("revoke", False)), "edit": shape(receive("edit", False))}
