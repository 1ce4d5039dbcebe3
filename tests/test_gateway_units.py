"""The gateway's pure parts: the outcome table, Retry-After, the outbox bound, key storage, pairing."""

from __future__ import annotations

import json
import time

import pytest

from gateway.hub import pairing_step
from gateway.keys import KeyStore
from gateway.webhooks.outcomes import classify, retry_after
from gateway.webhooks.store import Cursor, Store


@pytest.mark.parametrize("status, retried", [(200, None), (204, None), (400, False), (401, False), (404, False),
                                             (410, False), (301, False), (408, True), (429, True), (500, True),
                                             (502, True), (503, True)])
def test_which_answers_are_retried(status, retried):
    outcome = classify(status, None, None, time.time())
    if retried is None:
        assert outcome.ok
    else:
        assert not outcome.ok and outcome.retry is retried


def test_network_errors_are_retried():
    assert classify(None, None, ConnectionRefusedError("refused"), 0).retry
    assert classify(None, None, TimeoutError(), 0).result == "timeout"


def test_retry_after_in_seconds_and_as_a_date():
    now = time.time()
    assert retry_after("7", now) == 7
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert 28 <= retry_after(date, now) <= 31
    assert retry_after("soon", now) is None
    assert classify(429, "3", None, now).retry_after == 3
    assert classify(500, "3", None, now).retry_after is None, "Retry-After counts on 429 and 503 only"


def envelope(i: int, bot: str = "b1") -> dict:
    return {"id": f"evt_{i}", "bot": bot, "type": "message-upsert", "timestamp": float(i), "data": {}}


def test_the_outbox_bound_drops_the_oldest_dead_letters_first_and_counts(tmp_path):
    store = Store(tmp_path / "o.sqlite3", limit=100)
    created, _ = store.write([(envelope(i), ["a"], None) for i in range(60)])
    for row in created:
        store.failed(row.id, 1, 0, "HTTP 400", 400, dead=True)
    store.write([(envelope(i), ["a"], None) for i in range(60, 120)])
    depth = store.depth()["a"]
    assert depth["pending"] == 60 and depth["dead"] == 40
    assert [r.event_id for r in store.dead(limit=1)] == ["evt_20"], "the oldest dead letters went"
    assert store.counters()["dropped_dead"] == 20
    store.write([(envelope(i), ["a"], None) for i in range(120, 190)])
    assert store.depth()["a"] == {"pending": 100, "dead": 0, "oldest_pending": store.depth()["a"]["oldest_pending"]}
    assert store.counters() == {"dropped_dead": 60, "dropped_pending": 30}
    assert store.retry() == 0 and store.counters().get("requeued", 0) == 0


def test_the_same_event_is_stored_once_per_endpoint_and_cursors_persist(tmp_path):
    path = tmp_path / "o.sqlite3"
    store = Store(path)
    first, _ = store.write([(envelope(1), ["a", "b"], Cursor(10, 20, 3, 1.0))])
    again, _ = store.write([(envelope(1), ["a", "b"], Cursor(10, 20, 3, 1.0))])
    assert len(first) == 2 and again == []
    store.close()
    assert Store(path).cursors() == {"b1": Cursor(10, 20, 3, 1.0)}


def test_keys_are_stored_as_hashes_and_found_by_the_key(tmp_path):
    store = KeyStore(tmp_path / "k.json")
    key = store.add("ci", ["shop-*"], read_only=True)
    raw = (tmp_path / "k.json").read_text()
    assert key not in raw and json.loads(raw)["keys"][0]["name"] == "ci"
    assert (tmp_path / "k.json").stat().st_mode & 0o777 == 0o600
    found = store.find(key)
    assert found is not None and found.read_only and found.sees("shop-1") and not found.sees("other")
    assert store.find(key + "x") is None and store.find("") is None
    with pytest.raises(ValueError):
        store.add("ci")
    with pytest.raises(ValueError):
        store.add("../x")
    store.revoke("ci")
    assert store.find(key) is None


@pytest.mark.parametrize("hook, key, words", [
    ('url = "ftp://x"\nsecret = "s"', "gateway.webhooks[0].url", "http:// or https://"),
    ('url = "http://127.0.0.1:1/h"', "gateway.webhooks[0].secret", "needs a secret"),
    ('url = "http://127.0.0.1:1/h"\nsecret = "s"\nevents = ["mesage-upsert"]', "gateway.webhooks[0].events",
     "unknown event type"),
    ('url = "http://127.0.0.1:1/h"\nsecret = "s"\ncolour = 1', "gateway.webhooks[0]", "colour"),
    ('url = "http://127.0.0.1:1/h"\nsecret = "s"\n[gateway.webhooks.retry]\nattempts = 0',
     "gateway.webhooks[0].retry.attempts", "at least 1"),
])
def test_a_bad_webhook_is_refused_naming_the_key(tmp_path, hook, key, words):
    from protocol.config import ConfigError, load_config

    path = tmp_path / "b.toml"
    path.write_text(f"[[gateway.webhooks]]\n{hook}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key.startswith(key) and words in str(info.value), str(info.value)


def test_two_webhooks_may_not_share_a_name(tmp_path):
    from protocol.config import ConfigError, load_config

    path = tmp_path / "b.toml"
    hook = '[[gateway.webhooks]]\nname = "a"\nurl = "http://127.0.0.1:1/h"\nsecret = "s"\n'
    path.write_text(hook + hook)
    with pytest.raises(ConfigError, match="unique"):
        load_config(path)
    path.write_text('[gateway]\nlisten = "nowhere"\n')
    with pytest.raises(ConfigError, match="gateway.listen"):
        load_config(path)


def test_outbox_sync_reaches_sqlite_and_a_bad_value_is_refused_naming_it(tmp_path):
    from protocol.config import ConfigError, load_config

    path = tmp_path / "b.toml"
    path.write_text('[gateway]\noutbox_sync = "normal"\n')
    sync = load_config(path).gateway.outbox_sync
    store = Store(tmp_path / "o.sqlite3", 1000, sync)
    default = Store(tmp_path / "p.sqlite3", 1000)
    try:  # SQLite's synchronous: 1 NORMAL, 2 FULL
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert default.db.execute("PRAGMA synchronous").fetchone()[0] == 2, "full is the default"
    finally:
        store.close()
        default.close()
    path.write_text('[gateway]\noutbox_sync = "fast"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "gateway.outbox_sync" and "must be one of" in str(info.value), str(info.value)


def _update(pid: int, **data: object) -> dict:
    return {"kind": "event", "bot": "b", "pid": pid, "type": "connection-update",
            "data": {"connection": "connecting", **data}}


def test_pairing_keeps_the_lifes_pair_code_across_qr_refreshes_and_never_lends_it_to_the_next_life():
    known = None
    for body in (_update(10, qr="q1"), _update(10, pair_code="ABCD-EFGH"), _update(10, qr="q2")):
        known = pairing_step(known, body)
    assert known["data"]["qr"] == "q2" and known["data"]["pair_code"] == "ABCD-EFGH"
    assert pairing_step(known, {"kind": "heartbeat", "bot": "b", "pid": 10}) is known
    # a new worker (after a crash) shows its own QR, and its own code once it has one
    assert "pair_code" not in pairing_step(known, _update(11, qr="q3"))["data"]
    assert pairing_step(known, _update(10, connection="open")) is None
    assert pairing_step(known, _update(10, connection="close", reason="pairing timed out")) is None
    for state in ("stopping", "stopped", "backoff", "failed"):  # as a tap message, and as a history entry
        assert pairing_step(known, {"kind": "state", "bot": "b", "state": state}) is None
        assert pairing_step(known, {"kind": "event", "bot": "b", "type": "state", "data": {"state": state}}) is None
    assert pairing_step(known, {"kind": "state", "bot": "b", "state": "initializing"}) is known


def test_a_shard_that_did_not_answer_is_asked_briefly_until_its_recheck():
    # a shard down cost every fleet view (the dashboard's, every few seconds) the full 2 s
    from types import SimpleNamespace

    from gateway import bridge
    from protocol.client import NotRunning

    ask = bridge.ControlBridge(SimpleNamespace(cluster=None), timeout=10)
    now, up, timeouts = [100.0], [False], []

    def call_at(endpoint, command, args, timeout):
        timeouts.append(timeout)
        if not up[0]:
            raise NotRunning(f"{endpoint} does not answer")
        return {"bots": []}

    ask._call_at = call_at
    ask.clock = lambda: now[0]

    def fleet_view():
        return ask._ask_shard("ipc://shard-1", bridge.FLEET_TIMEOUT, "status", {})

    for _ in range(3):
        with pytest.raises(NotRunning):
            fleet_view()
    assert timeouts == [bridge.FLEET_TIMEOUT, bridge.DOWN_TIMEOUT, bridge.DOWN_TIMEOUT]
    now[0] += bridge.DOWN_RECHECK  # once in a while the full wait again: a slow shard is not taken for dead
    with pytest.raises(NotRunning):
        fleet_view()
    assert timeouts[-1] == bridge.FLEET_TIMEOUT
    up[0] = True  # back: its first answer ends the short asks
    assert fleet_view() == {"bots": []} and timeouts[-1] == bridge.DOWN_TIMEOUT
    fleet_view()
    assert timeouts[-1] == bridge.FLEET_TIMEOUT
    ask._executor.shutdown()
