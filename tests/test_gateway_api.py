"""The REST API, its auth, validation, OpenAPI document and the WebSocket stream, against a
real supervisor (simulated bots) and a real gateway process; one of each for the module."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from .gateway_harness import Stack, add_key, cli, configure, wait_until
from .harness import make_fleet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    fleet = make_fleet(root, [
        {"id": "shop-1", "simulated": {"message_rate": 5.0, "connect_delay": 0.0}},
        {"id": "shop-2"},
        {"id": "other", "simulated": {"paired": False, "pair_after": 3600.0, "qr_every": 0.3}},
        {"id": "leaver"},
        # started by the pair-code test: pairs by phone number, paired 8 s after it starts
        {"id": "phoner", "autostart": False, "phone_number": "15551234567",
         "simulated": {"paired": False, "pair_after": 8.0, "qr_every": 0.3}},
    ])
    port = configure(fleet, [], max_body_bytes=4096)
    stack = Stack()
    try:
        service = stack.supervisor(fleet)
        gw = stack.gateway(fleet, port)
        keys = {"admin": add_key(fleet, "admin"), "shop": add_key(fleet, "shop", "--bots", "shop-*"),
                "reader": add_key(fleet, "reader", "--read-only")}
        stack.start_bots(service)
        client = httpx.Client(base_url=gw.base, timeout=20)
        wait_until(lambda: all(b["container_state"] == "running" for b in
                               client.get("/v1/status", headers=auth(keys["admin"])).json()["bots"]
                               if b["bot_id"] != "phoner"), 20, "every bot running")
        yield {"fleet": fleet, "gw": gw, "keys": keys, "client": client, "service": service, "stack": stack,
               "port": port}
        client.close()
    finally:
        stack.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def test_requests_without_a_valid_key_get_401(env):
    c = env["client"]
    r = c.get("/v1/status")
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = c.get("/v1/status", headers=auth("bvk_" + "A" * 43))
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = c.get("/v1/status", headers={"X-Api-Key": env["keys"]["admin"]})
    assert r.status_code == 200


def test_a_key_sees_and_acts_only_within_its_scope(env):
    c, keys = env["client"], env["keys"]
    bots = [b["bot_id"] for b in c.get("/v1/status", headers=auth(keys["shop"])).json()["bots"]]
    assert sorted(bots) == ["shop-1", "shop-2"]
    r = c.get("/v1/bots/other", headers=auth(keys["shop"]))
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    r = c.get("/v1/bots/other/history", headers=auth(keys["shop"]))
    assert r.status_code == 403
    # read-only: reads everything, acts on nothing
    assert c.get("/v1/bots/other", headers=auth(keys["reader"])).status_code == 200
    r = c.post("/v1/bots/shop-1/send", headers=auth(keys["reader"]), json={"to": "1@s.whatsapp.net", "text": "x"})
    assert r.status_code == 403 and "read-only" in error_of(r)["message"]
    r = c.get("/v1/webhooks", headers=auth(keys["shop"]))
    assert r.status_code == 403, "fleet-wide webhooks need a key for every bot"


def test_a_revoked_key_is_refused_at_once(env):
    fleet, c = env["fleet"], env["client"]
    key = add_key(fleet, "temp")
    assert c.get("/v1/status", headers=auth(key)).status_code == 200
    listed = cli(fleet, "gateway", "keys", "list", "--json")
    assert "temp" in [k["name"] for k in json.loads(listed.stdout)]
    assert key not in listed.stdout and key not in (env["fleet"].root / "botvisor.keys.json").read_text()
    assert cli(fleet, "gateway", "keys", "revoke", "temp").returncode == 0
    assert c.get("/v1/status", headers=auth(key)).status_code == 401
    assert key not in env["gw"].log(), "keys are never logged"


def test_fleet_and_bot_status(env):
    c, key = env["client"], env["keys"]["admin"]
    status = c.get("/v1/status", headers=auth(key)).json()
    assert {b["bot_id"] for b in status["bots"]} == {"shop-1", "shop-2", "other", "leaver", "phoner"}
    assert status["counts"] == {"running": 4, "stopped": 1}
    one = c.get("/v1/bots/shop-1", headers=auth(key)).json()
    assert one["bot_id"] == "shop-1" and one["container_state"] == "running" and one["pid"] > 0
    r = c.get("/v1/bots/nope", headers=auth(key))
    assert r.status_code == 404 and error_of(r)["code"] == "unknown-bot"


def test_send_returns_the_send_and_validation_names_the_field(env):
    c, key = env["client"], env["keys"]["admin"]
    wait_until(lambda: c.get("/v1/bots/shop-1", headers=auth(key)).json()["bot_status"] == "online", 20, "online")
    r = c.post("/v1/bots/shop-1/send", headers=auth(key), json={"to": "15550001111@s.whatsapp.net", "text": "hi"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] and r.json()["to"] == "15550001111@s.whatsapp.net"
    r = c.post("/v1/bots/shop-1/send", headers=auth(key), json={"to": "15550001111@s.whatsapp.net"})
    assert r.status_code == 400 and error_of(r) == {"code": "bad-request", "field": "text",
                                                     "message": error_of(r)["message"]}
    r = c.post("/v1/bots/shop-1/send", headers=auth(key), json={"to": "x", "text": "y", "colour": "red"})
    assert r.status_code == 400 and error_of(r)["field"] == "colour"
    r = c.post("/v1/bots/shop-1/send", headers=auth(key), json={"to": "x", "text": 5})
    assert r.status_code == 400 and error_of(r)["field"] == "text"
    r = c.post("/v1/bots/shop-1/send", headers={**auth(key), "content-type": "application/json"}, content=b"{nope")
    assert r.status_code == 400 and error_of(r)["code"] == "bad-request"
    r = c.get("/v1/bots/..%2Fx/history", headers=auth(key))
    assert r.status_code in (400, 404) and "error" in r.json()


def test_every_other_operation_is_forwarded_with_the_control_socket_codes(env):
    c, key = env["client"], env["keys"]["admin"]
    r = c.post("/v1/bots/shop-1/operations/presence", headers=auth(key), json={"presence": "available"})
    assert r.status_code == 200 and r.json() == {"presence": "available"}
    r = c.post("/v1/bots/shop-1/operations/no_such_op", headers=auth(key), json={})
    assert r.status_code == 404 and error_of(r)["code"] == "unknown-command"
    r = c.post("/v1/bots/shop-1/operations/presence", headers=auth(key), json={"presence": "dancing"})
    assert r.status_code in (400, 502) and error_of(r)["code"] in ("bad-request", "worker-error")
    r = c.post("/v1/bots/shop-1/operations/status", headers=auth(key), json={})
    assert r.status_code == 404 and error_of(r)["field"] == "name"


def test_a_stopped_bot_answers_not_running_and_start_brings_it_back(env):
    c, key = env["client"], env["keys"]["admin"]
    r = c.post("/v1/bots/shop-2/stop", headers=auth(key))
    assert r.status_code == 200 and r.json()["before"] == "running"
    wait_until(lambda: c.get("/v1/bots/shop-2", headers=auth(key)).json()["container_state"] == "stopped", 15,
               "shop-2 stopped")
    r = c.post("/v1/bots/shop-2/send", headers=auth(key), json={"to": "1@s.whatsapp.net", "text": "x"})
    assert r.status_code == 409 and error_of(r)["code"] == "not-running"
    assert c.post("/v1/bots/shop-2/start", headers=auth(key)).status_code == 200
    wait_until(lambda: c.get("/v1/bots/shop-2", headers=auth(key)).json()["container_state"] == "running", 15,
               "shop-2 running again")


def test_history_has_pid_and_seq(env):
    c, key = env["client"], env["keys"]["admin"]
    events = c.get("/v1/bots/shop-1/history", params={"limit": 3}, headers=auth(key)).json()["events"]
    assert 1 <= len(events) <= 3
    assert all(e["pid"] > 0 and e["seq"] >= 0 for e in events)
    r = c.get("/v1/bots/shop-1/history", params={"limit": 0}, headers=auth(key))
    assert r.status_code == 400 and error_of(r)["field"] == "limit"


def test_oversized_bodies_are_refused_with_413(env):
    c, key = env["client"], env["keys"]["admin"]
    big = {"to": "1@s.whatsapp.net", "text": "x" * 5000}
    r = c.post("/v1/bots/shop-1/send", headers=auth(key), json=big)
    assert r.status_code == 413 and error_of(r)["code"] == "too-large"

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = c.post("/v1/bots/shop-1/send", headers={**auth(key), "content-type": "application/json"}, content=chunks())
    assert r.status_code == 413 and error_of(r)["code"] == "too-large"


def test_the_pairing_qr_as_png_and_text(env):
    c, key = env["client"], env["keys"]["admin"]
    with connect(f"ws://127.0.0.1:{env['gw'].port}/v1/stream?bot=other&type=connection-update&key={key}") as ws:
        assert json.loads(ws.recv(10))["kind"] == "hello"
        qrs = []
        while len(qrs) < 2:
            msg = json.loads(ws.recv(10))
            if msg["data"].get("qr"):
                qrs.append(msg["data"]["qr"])
    assert qrs[0] != qrs[1], "the QR changes"
    text = c.get("/v1/bots/other/qr.txt", headers=auth(key))
    assert text.status_code == 200 and text.text in qrs[1:] + [text.text] and text.text.startswith(qrs[1][:4])
    png = c.get("/v1/bots/other/qr", headers=auth(key))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    r = c.get("/v1/bots/shop-1/qr", headers=auth(key))
    assert r.status_code == 404 and error_of(r)["code"] == "not-found", "a paired bot shows no QR"
    r = c.get("/v1/bots/shop-1/pair-code", headers=auth(key))
    assert r.status_code == 404 and error_of(r)["code"] == "not-found"


def connection_updates(ws, until, timeout: float = 20.0) -> list[dict]:
    """The stream's connection-update events until ``until(events)`` holds (bounded)."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {timeout} s; connection updates so far: {[m['data'] for m in got]}"
        msg = json.loads(ws.recv(left))
        if msg.get("type") == "connection-update":
            got.append(msg)
    return got


def test_a_bot_pairing_by_phone_number_serves_its_pair_code_until_it_pairs(env):
    c, key, port = env["client"], env["keys"]["admin"], env["port"]
    wait_until(lambda: c.get("/v1/bots/other/qr.txt", headers=auth(key)).status_code == 200, 20, "other's QR")
    r = c.get("/v1/bots/other/pair-code", headers=auth(key))
    assert r.status_code == 404 and error_of(r)["code"] == "not-found" and "QR" in error_of(r)["message"], \
        "a bot pairing by QR only has no pair code"
    with connect(f"ws://127.0.0.1:{port}/v1/stream?bot=phoner&type=connection-update&key={key}") as ws:
        assert json.loads(ws.recv(10))["kind"] == "hello"
        assert c.post("/v1/bots/phoner/start", headers=auth(key)).status_code == 200

        def refreshed_after_the_code(events):  # the code, then two more QR codes: it outlives a refresh
            codes = [i for i, m in enumerate(events) if m["data"].get("pair_code")]
            return codes and sum(1 for m in events[codes[0]:] if m["data"].get("qr")) >= 2

        events = connection_updates(ws, refreshed_after_the_code)
        codes = [m["data"]["pair_code"] for m in events if m["data"].get("pair_code")]
        assert len(codes) == 1, "one pair code per life"
        code = codes[0]
        r = c.get("/v1/bots/phoner/pair-code", headers=auth(key))
        assert r.status_code == 200 and r.json() == {"bot": "phoner", "pair_code": code}, r.text
        assert c.get("/v1/bots/phoner/qr.txt", headers=auth(key)).status_code == 200, "the QR is still shown too"
        history = c.get("/v1/bots/phoner/history", headers=auth(key)).json()["events"]
        assert [e["data"]["pair_code"] for e in history if e["data"].get("pair_code")] == [code]
        assert c.get("/v1/bots/phoner/pair-code", headers=auth(env["keys"]["shop"])).status_code == 403

        # a gateway started after the code was shown (restarted) still serves it, from the history
        stack = env["stack"]
        env["gw"].kill()
        env["gw"] = stack.gateway(env["fleet"], port)
        r = c.get("/v1/bots/phoner/pair-code", headers=auth(key))
        assert r.status_code == 200 and r.json()["pair_code"] == code, r.text
    with connect(f"ws://127.0.0.1:{port}/v1/stream?bot=phoner&type=connection-update&key={key}") as ws:
        assert json.loads(ws.recv(10))["kind"] == "hello"
        connection_updates(ws, lambda events: (  # a QR from the new gateway's own tap: the code survives it
            any(m["data"].get("qr") for m in events)))
        r = c.get("/v1/bots/phoner/pair-code", headers=auth(key))
        assert r.status_code == 200 and r.json()["pair_code"] == code, r.text
        connection_updates(ws, lambda events: any(m["data"].get("connection") == "open" for m in events))
    r = c.get("/v1/bots/phoner/pair-code", headers=auth(key))
    assert r.status_code == 404 and error_of(r)["code"] == "not-found", "a paired bot has no pair code"
    assert c.get("/v1/bots/phoner/qr", headers=auth(key)).status_code == 404


def test_the_stream_filters_by_bot_and_type_and_carries_seq(env):
    key = env["keys"]["admin"]
    url = f"ws://127.0.0.1:{env['gw'].port}/v1/stream?bot=shop-1&type=message-upsert&type=heartbeat&key={key}"
    with connect(url) as ws:
        assert json.loads(ws.recv(10))["kind"] == "hello"
        got = [json.loads(ws.recv(10)) for _ in range(12)]
    assert {m["bot"] for m in got} == {"shop-1"}
    assert {m.get("type") or m["kind"] for m in got} <= {"message-upsert", "heartbeat"}
    assert any(m["kind"] == "event" for m in got) and any(m["kind"] == "heartbeat" for m in got)
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(m["id"].startswith("evt_") for m in got if m["kind"] == "event")
    # a scoped key never sees another bot, whatever it asks for
    url = f"ws://127.0.0.1:{env['gw'].port}/v1/stream?type=heartbeat&key={env['keys']['shop']}"
    with connect(url) as ws:
        ws.recv(10)
        bots = {json.loads(ws.recv(10))["bot"] for _ in range(12)}
    assert bots <= {"shop-1", "shop-2"}


def test_the_stream_refuses_a_missing_key(env):
    from websockets.exceptions import ConnectionClosed

    with connect(f"ws://127.0.0.1:{env['gw'].port}/v1/stream") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
    assert info.value.rcvd.code == 4401


def test_the_stream_refuses_a_shard_that_is_not_a_number_naming_it(env):
    from websockets.exceptions import ConnectionClosed

    key = env["keys"]["admin"]
    with connect(f"ws://127.0.0.1:{env['gw'].port}/v1/stream?shard=one&key={key}") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
    assert info.value.rcvd.code == 4400 and "shard" in info.value.rcvd.reason and "'one'" in info.value.rcvd.reason


def test_the_openapi_document_validates_and_the_docs_page_needs_no_cdn(env):
    from openapi_spec_validator import validate

    c = env["client"]
    doc = c.get("/openapi.json").json()
    validate(doc)
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/status", "/v1/bots/{bot}/send", "/v1/bots/{bot}/operations/{name}", "/v1/bots/{bot}/qr",
                 "/v1/webhooks/dead", "/healthz", "/readyz"):
        assert path in doc["paths"], path
    assert doc["paths"]["/v1/status"]["get"]["security"] == [{"apiKey": []}]
    page = c.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    import re

    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        assert c.get(asset).status_code == 200, asset


def test_health_readiness_and_metrics(env):
    c = env["client"]
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json()["ready"] is True
    text = c.get("/metrics").text
    assert "botvisor_gateway_tap_messages_total" in text
    assert c.get("/v1", headers=auth(env["keys"]["admin"])).json()["metrics"] == "/metrics"


def test_logout_ends_the_session(env):
    c, key = env["client"], env["keys"]["admin"]
    wait_until(lambda: c.get("/v1/bots/leaver", headers=auth(key)).json()["bot_status"] == "online", 20, "online")
    assert c.post("/v1/bots/leaver/logout", headers=auth(env["keys"]["reader"])).status_code == 403
    r = c.post("/v1/bots/leaver/logout", headers=auth(key))
    assert r.status_code == 200, r.text
    wait_until(lambda: c.get("/v1/bots/leaver", headers=auth(key)).json()["container_state"] == "failed", 20,
               "the logged-out bot failed (its session is gone)")
