"""Bad input against a running supervisor (issue 14, "Bad input"): every protocol message kind
with every field wrong, signed with the bot's real key so it reaches the decoder, and control
requests malformed and oversized. The service never crashes or hangs, and says what is wrong."""

from __future__ import annotations

import threading
import time
import uuid

import msgpack
import pytest
import zmq

from protocol import PROTOCOL_VERSION, ProtocolError, decode
from protocol.config import load_config
from protocol.control import decode_reply
from protocol.signing import sign
from supervisor.arbiter import Supervisor

from .harness import stop_embedded, wait_until
from .malformed_messages import mutations, samples


@pytest.fixture
def embedded(fleet_factory):
    fleet = fleet_factory([{"id": "b1", "autostart": True}])
    supervisor = Supervisor(load_config(fleet.config_path))
    thread = threading.Thread(target=supervisor.run, name="botvisor")
    thread.start()
    container = supervisor.manager.get_bot_container("b1")
    try:
        wait_until(lambda: container.is_container_healthy(), 20, "b1 running")
        yield fleet, supervisor, container
    finally:
        stop_embedded(supervisor, thread)
    assert not thread.is_alive()


def test_every_field_of_every_kind_made_wrong_is_refused_naming_the_field(embedded):
    fleet, supervisor, container = embedded
    pid = container.process.pid
    secret = supervisor.secrets["b1"]
    cases = [c for m in samples(fleet.server, "b1", pid) for c in mutations(m)]
    assert len(cases) > 500
    for path, _topic, raw, reason in cases:
        assert path.split(".")[-1] in reason, (path, reason)
        with pytest.raises(ProtocolError):
            decode(raw)
    before, restarts = dict(supervisor.stats), container.restarts
    context = zmq.Context()
    sock = context.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDHWM, 0)  # queue them all: none may be dropped on our side
    sock.connect(fleet.endpoint("events"))
    try:
        assert sock.poll(5000) and sock.recv()
        for _path, topic, raw, _reason in cases:
            sock.send_multipart([topic, raw, sign(secret, topic, raw)])
    finally:
        sock.close()
        context.term()
    # a notice is the supervisor's own kind: no worker key signs it, so it is refused as forged;
    # every other one reaches the decoder and is refused as malformed
    notices = sum(1 for _, topic, _, _ in cases if topic.endswith(b".notice"))
    wait_until(lambda: supervisor.stats["rejected"] - before.get("rejected", 0) >= len(cases), 20,
               f"{len(cases)} malformed messages counted")
    assert supervisor.stats["rejected_malformed"] - before.get("rejected_malformed", 0) == len(cases) - notices
    assert supervisor.stats["internal_errors"] == 0
    assert container.process is not None and container.process.pid == pid and container.restarts == restarts
    assert container.is_container_healthy()


def request(endpoint: str, raw: bytes, timeout: float = 3.0) -> object:
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(raw)
        return decode_reply(sock.recv()) if sock.poll(int(timeout * 1000)) else None
    finally:
        sock.close(0)


GOOD = {"v": PROTOCOL_VERSION, "id": "r1", "command": "status", "args": {}}
BAD_REQUESTS = [
    (b"", "malformed request"),
    (b"\xc1\xc1", "malformed request"),
    (msgpack.packb([1, 2]), "malformed request"),
    (msgpack.packb({**GOOD, "id": 5}), "id"),
    (msgpack.packb({**GOOD, "command": 5}), "command"),
    (msgpack.packb({**GOOD, "args": []}), "args"),
    (msgpack.packb({"v": PROTOCOL_VERSION, "id": "r1", "args": {}}), "command"),
    (msgpack.packb({**GOOD, "v": 99}), "unsupported protocol version 99"),
    (msgpack.packb({**GOOD, "extra": 1}), "extra"),
    (msgpack.packb({**GOOD, "command": "explode"}), "unknown command 'explode'"),
    (msgpack.packb({**GOOD, "args": {"bots": 5}}), "'bots'"),
    (msgpack.packb({**GOOD, "args": {"bots": ["ghost"]}}), "no such bot: ghost"),
    (msgpack.packb({**GOOD, "command": "send", "args": {"bot": "b1", "to": 5, "text": None}}), "'to' and 'text'"),
    (msgpack.packb({**GOOD, "command": "start", "args": {"bots": "b1"}}), "bots"),
    (msgpack.packb({**GOOD, "command": "send", "args": {"bot": "b1", "to": "a", "text": "b", "timeout": "x"}}),
     "'timeout'"),
    (b"\x00" * (3 * 2**20), "malformed request"),  # big, under the frame limit: decoded and refused
]


@pytest.mark.parametrize(("raw", "reason"), BAD_REQUESTS, ids=[r for _, r in BAD_REQUESTS])
def test_a_malformed_control_request_gets_an_error_naming_what_is_wrong(embedded, raw, reason):
    fleet, supervisor, _ = embedded
    reply = request(fleet.endpoint("control"), raw)
    assert reply is not None, "no answer"
    assert not reply.ok and reason in reply.error, reply.error
    assert supervisor.stats["internal_errors"] == 0


def test_an_oversized_control_request_is_dropped_and_the_service_answers_the_next(embedded):
    fleet, supervisor, _ = embedded
    started = time.monotonic()
    assert request(fleet.endpoint("control"), b"\x00" * (5 * 2**20), timeout=1.0) is None  # over MAXMSGSIZE
    reply = request(fleet.endpoint("control"), msgpack.packb({**GOOD, "id": uuid.uuid4().hex, "command": "ping"}))
    assert reply is not None and reply.ok and time.monotonic() - started < 5
