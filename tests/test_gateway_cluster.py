"""The gateway over a [cluster]: two real shards on loopback (tcp + CURVE, one real PostgreSQL),
six simulated bots, real gateway processes and a real webhook receiver.

Over real HTTP: the status lists every bot of every shard with its shard, an action on a bot
of the other shard reaches that shard, the stream carries both shards' events (seq per bot),
the webhooks get each event once fleet-wide (a gateway per shard delivers its own shard's; a
``webhooks_from = "fleet"`` gateway every shard's), the dashboard shows a shard column, and a
killed shard is reported as down, not dropped.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest
from websockets.sync.client import connect

from bench.shards import LocalCluster
from gateway.envelope import event_id
from gateway.keys import KeyStore
from gateway.runtime import keys_path
from protocol.config import BotConfig, load_config
from supervisor.cluster.sharding import assignment

from .cluster_fixtures import database, postgres  # noqa: F401 (fixtures)
from .gateway_harness import GatewayProcess, Receiver, free_port, hook, wait_until, webhook_toml
from .pgserver import PostgresServer  # noqa: F401

pytestmark = pytest.mark.slow
BOTS = [f"gw{i}" for i in range(6)]  # three on each of two shards


def planned(shards: int) -> dict[str, int]:
    return assignment([BotConfig(id=b) for b in BOTS], shards)


class Gateways:
    """Gateway processes on a shard's config (plus a [gateway] table); killed by pid at close."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.procs: list[GatewayProcess] = []
        self.receivers: list[Receiver] = []

    def start(self, name: str, shard: int, receiver: Receiver, **gateway: Any) -> tuple[GatewayProcess, str]:
        root = self.cluster.root / name
        root.mkdir()
        port = free_port()
        settings = {"listen": f"127.0.0.1:{port}", "data_dir": str(root / "gw"), **gateway}
        config = root / "botvisor.toml"
        config.write_text(self.cluster.shard(shard).config.read_text() + "\n"
                          + webhook_toml([hook(receiver, events=["state"])], settings))
        key = KeyStore(keys_path(load_config(config))).add("admin")
        gw = GatewayProcess(SimpleNamespace(config_path=config, root=root), port)  # type: ignore[arg-type]
        self.procs.append(gw)
        gw.wait_ready(60)
        return gw, key

    def receiver(self) -> Receiver:
        r = Receiver().start()
        self.receivers.append(r)
        return r

    def close(self) -> None:
        for gw in self.procs:
            gw.kill()
        for r in self.receivers:
            r.stop()


@pytest.fixture
def cluster(tmp_path: Path, database: str) -> Iterator[LocalCluster]:  # noqa: F811
    c = LocalCluster(tmp_path, database, BOTS, tcp=True)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def gateways(cluster: LocalCluster) -> Iterator[Gateways]:
    g = Gateways(cluster)
    try:
        yield g
    finally:
        g.close()


class Stream:
    """A WebSocket client of /v1/stream on a thread, keeping every message."""

    def __init__(self, base: str, key: str, query: str = "") -> None:
        self.messages: list[dict[str, Any]] = []
        self._exit = contextlib.ExitStack()
        self._ws = self._exit.enter_context(connect(base.replace("http://", "ws://") + f"/v1/stream?key={key}{query}",
                                                    open_timeout=20))
        assert json.loads(self._ws.recv(timeout=20))["kind"] == "hello"
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._ws:
                self.messages.append(json.loads(raw))
        except Exception:  # closed at the end of the test
            pass

    def close(self) -> None:
        self._exit.close()
        self._thread.join(5)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def start_two_shards(cluster: LocalCluster) -> dict[str, int]:
    plan = planned(2)
    assert set(plan.values()) == {0, 1}, "both shards must own bots for this test"
    for k in (0, 1):
        cluster.start(k, 2)
    for k in (0, 1):
        mine = {b for b, s in plan.items() if s == k}
        cluster.wait(lambda k=k, mine=mine: cluster.running(k) == mine, 60, f"shard {k} running its bots")
    return plan


def restarted(gw: GatewayProcess, key: str, cluster: LocalCluster, bot: str, shard: int) -> None:
    """Restart ``bot`` through the gateway; wait until its own shard runs a new worker for it."""
    before = cluster.worker_pids(shard)[bot]
    r = httpx.post(gw.base + f"/v1/bots/{bot}/restart", headers=auth(key), timeout=30)
    assert r.status_code == 200, r.text
    cluster.wait(lambda: cluster.worker_pids(shard).get(bot) not in (None, before)
                 and bot in cluster.running(shard), 30, f"{bot} restarted on shard {shard}")


def test_the_gateway_shows_routes_and_streams_every_shard_and_reports_a_dead_one(
        cluster: LocalCluster, gateways: Gateways) -> None:
    plan = start_two_shards(cluster)
    own_hooks, fleet_hooks = gateways.receiver(), gateways.receiver()
    gw, key = gateways.start("gw0", 0, own_hooks)  # shard 0's pod: webhooks_from = "shard" (the default)
    fleet_gw, fleet_key = gateways.start("gwfleet", 0, fleet_hooks, webhooks_from="fleet")
    client = httpx.Client(base_url=gw.base, headers=auth(key), timeout=30)
    try:
        # -- the status: every bot of both shards, each with the shard that runs it
        status = client.get("/v1/status").json()
        assert {b["bot_id"]: b["shard"] for b in status["bots"]} == plan
        assert all(b["container_state"] == "running" for b in status["bots"])
        assert [(s["shard"], s["reachable"]) for s in status["shards"]] == [(0, True), (1, True)]
        ready = client.get("/readyz").json()
        assert ready["ready"] and ready["shards"] == {"0": True, "1": True} and ready["webhooks_from"] == 0

        # -- the stream: state changes of a bot on each shard, restarted through the gateway
        other = next(b for b, s in plan.items() if s == 1)
        mine = next(b for b, s in plan.items() if s == 0)
        assert client.get(f"/v1/bots/{other}").json()["shard"] == 1
        stream = Stream(gw.base, key, "&type=state")
        one = Stream(gw.base, key, "&type=state&shard=1")  # only what shard 1's tap carried
        try:
            restarted(gw, key, cluster, other, 1)  # an action on a bot shard 0's gateway does not run
            restarted(gw, key, cluster, mine, 0)
            wait_until(lambda: {m["bot"] for m in stream.messages if m.get("state") == "running"} >= {other, mine},
                       30, "both restarts on the stream")
            wait_until(lambda: any(m["bot"] == other and m.get("state") == "running" for m in one.messages), 30,
                       "shard 1's restart on its own stream")
        finally:
            stream.close()
            one.close()
        assert one.messages and {m["shard"] for m in one.messages} == {1}, "shard=1 carries shard 1 only"
        for m in stream.messages:
            assert m["shard"] == plan[m["bot"]], m
        for bot in (other, mine):
            seqs = [m["seq"] for m in stream.messages if m["bot"] == bot]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (bot, seqs)
        assert {m["shard"] for m in stream.messages} == {0, 1}

        # a send to the other shard's bot: its worker answers with the send's id
        sent = client.post(f"/v1/bots/{other}/send", json={"to": "15550001111@s.whatsapp.net", "text": "hi"})
        assert sent.status_code == 200 and sent.json().get("id"), sent.text

        # -- webhooks: shard 0's gateway delivers shard 0's events only; the fleet gateway both shards'
        wait_until(lambda: {e["bot"] for e in fleet_hooks.accepted_events() if e["data"]["state"] == "running"}
                   >= {other, mine}, 30, "both restarts delivered by the fleet gateway")
        wait_until(lambda: mine in {e["bot"] for e in own_hooks.accepted_events()
                                    if e["data"]["state"] == "running"}, 30, "shard 0's restart delivered")
        own = own_hooks.accepted_events()
        assert own and {e["shard"] for e in own} == {0} and {e["bot"] for e in own} <= {b for b, s in plan.items()
                                                                                       if s == 0}
        fleet = fleet_hooks.accepted_events()
        assert {e["shard"] for e in fleet} == {0, 1}
        for e in fleet:
            assert e["shard"] == plan[e["bot"]], e
        ids = [e["id"] for e in fleet]
        assert len(ids) == len(set(ids)), "an event id repeats across shards"
        # the same event has the same id from either gateway (a receiver fed by both can deduplicate)
        same = {e["id"] for e in own} & set(ids)
        assert same, "the two gateways named shard 0's events differently"

        # -- the dashboard's fleet table: a Shard column, each bot's shard in it
        html = signed_in(fleet_gw, fleet_key).get("/ui/").text
        assert re.search(r'<th scope="col"[^>]*>\s*<a[^>]*>Shard', html), "no Shard column"
        cells = dict(re.findall(r'<tr id="bot-([\w-]+)".*?data-field="shard">(\d+)</td>', html, re.S))
        assert {b: int(s) for b, s in cells.items()} == plan

        # -- shard 1 killed: reported, its bots still listed (unknown), actions on them refused naming it
        cluster.kill(1)
        cluster.close_runs_of(1, time.time())
        status = client.get("/v1/status")
        assert status.status_code == 200
        body = status.json()
        down = {s["shard"]: s for s in body["shards"]}
        assert down[1]["reachable"] is False and "error" in down[1] and down[0]["reachable"] is True
        shown = {b["bot_id"]: b for b in body["bots"]}
        assert set(shown) == set(BOTS)
        for bot, k in plan.items():
            assert shown[bot]["shard"] == k
            assert (shown[bot]["container_state"] == "unknown") == (k == 1), shown[bot]
        assert body["counts"].get("unknown") == sum(1 for k in plan.values() if k == 1)
        refused = client.post(f"/v1/bots/{other}/restart")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "no-supervisor"
        assert "shard 1" in refused.json()["error"]["message"]
        # the pod's gateway stays ready: its own shard answers (docs/http.md, /readyz in a cluster)
        assert client.get("/readyz").status_code == 200
        assert client.get(f"/v1/bots/{mine}").json()["container_state"] == "running"
        page = signed_in(fleet_gw, fleet_key).get("/ui/").text
        for bot, k in plan.items():  # the dashboard lists the dead shard's bots as unknown, not gone
            row = re.search(rf'<tr id="bot-{bot}" data-bot="{bot}" data-state="([a-z]+)"', page)
            assert row and (row.group(1) == "unknown") == (k == 1), bot

        # -- shard 1 back: the gateway's tap reconnects by itself, its bots are on the stream again
        stream = Stream(gw.base, key, "&type=state")
        try:
            cluster.start(1, 2)
            back = {b for b, k in plan.items() if k == 1}
            wait_until(lambda: {m["bot"] for m in stream.messages if m.get("state") == "running"} >= back,
                       60, "shard 1's bots running again, on the stream")
        finally:
            stream.close()
        assert {m["shard"] for m in stream.messages if m["bot"] in back} == {1}
        body = client.get("/v1/status").json()
        assert all(s["reachable"] for s in body["shards"])
        assert {b["bot_id"]: b["shard"] for b in body["bots"]} == plan
    finally:
        client.close()
    assert cluster.overlaps() == [] and cluster.replaced() == []


def signed_in(gw: GatewayProcess, key: str) -> httpx.Client:
    """A dashboard session over plain HTTP: the sign-in form's CSRF token, then the key."""
    c = httpx.Client(base_url=gw.base, timeout=30)
    form = c.get("/ui/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token, form
    r = c.post("/ui/login", data={"csrf": token.group(1), "key": key, "next": "/ui/"})
    assert r.status_code == 303, r.text
    return c


def test_event_ids_name_the_shard_in_a_cluster_and_are_unchanged_on_one_host() -> None:
    # a pod's pid namespace repeats pids, and seq starts at 0 in each worker: only the shard tells
    # two shards' events apart for sure, and the outbox keeps one delivery per (endpoint, id)
    args = ("fleet", "b1", 7, 0, 1764633600.25)
    assert event_id(*args, shard=0) != event_id(*args, shard=1)
    assert event_id(*args) == "evt_" + __import__("hashlib").sha256(b"fleet/b1/7/0/1764633600.25").hexdigest()[:24]


def test_a_shard_gateway_that_cannot_tell_its_shard_refuses_to_start(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    from .harness import REPO

    if re.search(r"-\d+$", socket.gethostname().split(".")[0]):
        pytest.skip("this host's name ends in an ordinal, which names a shard")
    config = tmp_path / "botvisor.toml"
    config.write_text(f'[supervisor]\nrun_dir = "{tmp_path / "run"}"\nauth_dir = "{tmp_path / "auth"}"\n'
                      '[cluster]\nshards = 2\nshard = "auto"\ndatabase = "postgresql:///x"\n'
                      'peer_control = "tcp://127.0.0.1:1{shard}"\npeer_tap = "tcp://127.0.0.1:2{shard}"\n'
                      f'[gateway]\nlisten = "127.0.0.1:{free_port()}"\n[[bots]]\nid = "b1"\n')
    env = {k: v for k, v in os.environ.items() if k != "BOTVISOR_SHARD"}
    run = subprocess.run([sys.executable, "-m", "gateway", "-c", str(config)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 78, run.stderr
    assert 'webhooks_from = "fleet"' in run.stderr and "shard" in run.stderr
