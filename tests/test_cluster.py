"""Three shards on loopback, 60 simulated bots, one real PostgreSQL: one owner per bot, always.

The simulated WhatsApp server (worker/backends/simserver.py) records every second live stream
on an account as a StreamReplaced, and the taps give every worker's running interval per shard:
each test asserts neither ever happened.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from bench.shards import LocalCluster
from supervisor.cluster.sharding import assignment, moves
from protocol.config import BotConfig

from .cluster_fixtures import database, postgres  # noqa: F401 (fixtures)
from .harness import REPO
from .pgserver import PostgresServer

pytestmark = pytest.mark.slow
BOTS = [f"bot{i:02d}" for i in range(60)]


def planned(shards: int) -> dict[int, set[str]]:
    table = assignment([BotConfig(id=b) for b in BOTS], shards)
    return {k: {b for b, s in table.items() if s == k} for k in range(shards)}


@pytest.fixture
def cluster(tmp_path: Path, database: str) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, database, BOTS)
    try:
        yield c
    finally:
        c.close()


def fleet_status(cluster: LocalCluster, k: int) -> subprocess.CompletedProcess[str]:
    """`botvisor status --fleet --json` with shard k's config (every shard reads the same [cluster])."""
    return subprocess.run([sys.executable, "-m", "supervisor.cli", "status", "-c", str(cluster.shard(k).config),
                           "--fleet", "--json", "--timeout", "2"], cwd=REPO, capture_output=True, text=True, timeout=60)


def health(cluster: LocalCluster, k: int, ready: bool = True) -> subprocess.CompletedProcess[str]:
    """`botvisor health [--ready]`: the probes of deploy/kubernetes/."""
    return subprocess.run([sys.executable, "-m", "supervisor.cli", "health", "-c", str(cluster.shard(k).config),
                           *(["--ready"] if ready else [])], cwd=REPO, capture_output=True, text=True, timeout=60)


def start_all(cluster: LocalCluster, shards: int) -> dict[int, set[str]]:
    plan = planned(shards)
    for k in range(shards):
        cluster.start(k, shards)
    for k in range(shards):
        cluster.wait(lambda k=k: cluster.running(k) == plan[k], 60, f"shard {k} running its {len(plan[k])} bots")
    return plan


#: the sigkill test's lease: long enough that the restarted shard is up, and the fleet tap with it,
#: while its predecessor's leases still run (the tap cannot see what a shard published before
#: the tap was back: PUB/SUB keeps nothing for a subscriber not yet connected)
KILLED_LEASE_TTL = 10.0


def test_each_bot_runs_on_exactly_one_shard_and_comes_back_to_it_after_a_sigkill(tmp_path: Path, database: str) -> None:
    cluster = LocalCluster(tmp_path, database, BOTS, timings={"lease_ttl": KILLED_LEASE_TTL})
    try:
        _sigkill_and_back(cluster)
    finally:
        cluster.close()


def _sigkill_and_back(cluster: LocalCluster) -> None:
    plan = start_all(cluster, 3)
    assert all(plan[k] for k in range(3)) and set().union(*plan.values()) == set(BOTS)
    for k in range(3):
        assert cluster.running(k) == plan[k]
    view = fleet_status(cluster, 0)
    assert view.returncode == 0, view.stderr
    assert {b["bot_id"]: b["shard"] for b in json.loads(view.stdout)["bots"]} == \
        {b: k for k, bots in plan.items() for b in bots}
    cluster.kill(1)
    killed_at = time.time()
    cluster.close_runs_of(1, killed_at)
    # the others never take shard 1's bots: their config does not give them, and the leases are held
    time.sleep(0.5)
    assert cluster.running(0) == plan[0] and cluster.running(2) == plan[2]
    view = fleet_status(cluster, 0)
    assert view.returncode == 1  # a shard down is a fleet in trouble, and its bots are shown, not dropped
    shown = {b["bot_id"]: b for b in json.loads(view.stdout)["bots"]}
    assert set(shown) == set(BOTS)
    assert {b for b, s in shown.items() if s["container_state"] == "unknown"} == plan[1]
    assert all(shown[b]["shard"] == 1 for b in plan[1])
    from protocol.config import load_config
    from protocol.fleet import FleetClient

    merged = FleetClient(load_config(cluster.shard(2).config)).call("status")  # what `top --fleet` shows
    assert merged["problem"] == "shard(s) 1 not answering" and len(merged["bots"]) == len(BOTS)
    tap = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "tap", "-c", str(cluster.shard(0).config),
                            "--fleet", "--json", "--type", "state", "--count", "20", "--timeout", "60"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the tap subscribes to all three shards (one of them down) before shard 1 is back
        cluster.start(1, 3)
        # up (and the tap with it: it retries every 100 ms) before the leases can expire
        assert time.time() < killed_at + KILLED_LEASE_TTL - 2 * cluster.timings["renew_interval"], \
            "shard 1 took too long to start again: its leases had expired"
        out, err = tap.communicate(timeout=90)
    finally:
        if tap.poll() is None:
            tap.kill()
            tap.wait()
    assert tap.returncode == 0, f"{err}\n{out[-2000:]}"
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 20 and {line["shard"] for line in lines} == {1} and {line["bot"] for line in lines} <= plan[1]
    came_back = cluster.wait(lambda: cluster.running(1) == plan[1], 60, "shard 1's bots back on shard 1")
    for k in (0, 2):
        assert cluster.running(k) == plan[k]
    # a new incarnation waits for its predecessor's leases to expire (renewed every renew_interval
    # up to the kill): never two owners, even briefly
    started = [c.ts for k, c in cluster.events if k == 1 and c.state.value == "initializing" and c.ts > killed_at]
    expired = killed_at + KILLED_LEASE_TTL - 2 * cluster.timings["renew_interval"]
    assert started and min(started) >= expired, "a restarted shard reclaimed a lease before it expired"
    assert cluster.overlaps() == []
    assert cluster.replaced() == []
    assert came_back


def test_resharding_3_to_4_moves_a_quarter_each_intact_and_never_twice(cluster: LocalCluster) -> None:
    plan = start_all(cluster, 3)
    moved = moves([BotConfig(id=b) for b in BOTS], 3, 4)
    assert 8 <= len(moved) <= 23, f"rendezvous hashing should move about a quarter, moved {len(moved)}"
    assert all(m.target == 3 for m in moved)  # only to the new shard: nothing shuffles between old ones
    fingerprints = {}
    for m in moved:  # what must arrive: the session, its metadata, and a file an app keeps there
        d = cluster.shard(m.source).bot_dir(m.bot, cluster.server)
        (d / "app-state.json").write_text(json.dumps({"bot": m.bot, "counter": 12345}))
        fingerprints[m.bot] = {name: (d / name).read_bytes() for name in ("creds.json", "app-state.json")}
    new_plan = planned(4)
    cluster.start(3, 4)  # the new shard first: it waits, leases held elsewhere
    time.sleep(1.0)
    assert cluster.running(3) == set()
    waiting = cluster.control(3, "status")["bots"]
    assert {b["bot_id"] for b in waiting if b.get("waiting")} == {m.bot for m in moved}
    assert all(b["shard"] == 3 and b["lease"] is None for b in waiting)
    began = time.time()
    for k in range(3):
        cluster.write(k, 4)
        cluster.signal(k, signal.SIGHUP)
    for k in range(4):
        cluster.wait(lambda k=k: cluster.running(k) == new_plan[k], 60, f"shard {k} running its bots after 3 -> 4")
    assert new_plan[3] == {m.bot for m in moved}
    for m in moved:
        d = cluster.shard(3).bot_dir(m.bot, cluster.server)
        for name, content in fingerprints[m.bot].items():
            assert (d / name).read_bytes() == content, f"{m.bot}/{name} did not arrive intact"
        assert list(d.glob("creds.backup.*.json")), f"{m.bot}: the handover's backup is missing"
    assert cluster.overlaps() == []
    assert cluster.replaced() == []
    # the bots that stayed were not restarted by the move
    stayed = set(BOTS) - {m.bot for m in moved}
    restarted = {c.bot for _k, c in cluster.events if c.bot in stayed and c.ts >= began and c.state.value == "stopping"}
    assert restarted == set()


def test_a_shard_cut_off_from_postgres_stops_its_bots_before_its_leases_expire(
        tmp_path: Path, postgres: PostgresServer, database: str) -> None:
    from .pgproxy import Proxy

    proxy = Proxy("127.0.0.1", postgres.port).start()
    dbname = database.rsplit("/", 1)[1]
    cluster = LocalCluster(tmp_path, database, BOTS,
                           database_dsn=lambda k: postgres.dsn(dbname, proxy.port) if k == 0 else database)
    try:
        plan = start_all(cluster, 3)
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            proxy.cut()  # packets to PostgreSQL from shard 0 now vanish; the others are untouched
            cut_at = time.time()
            cluster.wait(lambda: set(cluster.states(0).values()) == {"stopped"}, 20, "shard 0 to stop its bots")
            stops = {c.bot: c.ts for k, c in cluster.events
                     if k == 0 and c.ts > cut_at and c.state.value == "stopped"}
            assert set(stops) == plan[0]
            expiry = dict(conn.execute(
                "SELECT bot, extract(epoch FROM expires_at)::float8 FROM botvisor_lease WHERE shard = 0").fetchall())
            for bot, stopped in stops.items():
                assert stopped < expiry[bot], f"{bot} stopped {stopped - expiry[bot]:.2f} s after its lease expired"
            ahead = min(expiry[b] - stops[b] for b in stops)
            print(f"\nshard 0 stopped its {len(stops)} bots {ahead:.2f} to {max(expiry[b] - stops[b] for b in stops):.2f} s "
                  f"before their leases expired, {max(stops.values()) - cut_at:.2f} s after the cut")
            assert ahead >= 0.2, f"only {ahead:.2f} s ahead of expiry"
            assert cluster.running(1) == plan[1] and cluster.running(2) == plan[2]
            probe = health(cluster, 0)  # alive (the loop answers) but not ready: it runs nothing now
            assert probe.returncode == 1 and "cannot reach PostgreSQL" in probe.stdout, probe.stdout + probe.stderr
            assert health(cluster, 0, ready=False).returncode == 0
            proxy.heal()
            cluster.wait(lambda: cluster.running(0) == plan[0], 60, "shard 0 back once PostgreSQL is reachable")
            assert health(cluster, 0).returncode == 0
        assert cluster.overlaps() == []
        assert cluster.replaced() == []
    finally:
        cluster.close()
        proxy.stop()


def _ended(pid: int) -> bool:
    """Gone or a zombie; asked in one call (a check then a look can see it die in between)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_wedged_shard_cut_off_from_postgres_still_kills_its_workers_before_expiry(
        tmp_path: Path, postgres: PostgresServer, database: str) -> None:
    """The loop cannot run its timers (SIGUSR1 wedges it, a debug hook): the backstop thread kills."""
    import psutil

    from supervisor.systemd import WEDGE_ENV

    from .pgproxy import Proxy

    proxy = Proxy("127.0.0.1", postgres.port).start()
    dbname = database.rsplit("/", 1)[1]
    bots = BOTS[:12]
    cluster = LocalCluster(tmp_path, database, bots, database_dsn=lambda k: postgres.dsn(dbname, proxy.port))
    try:
        cluster.start(0, 1, env={WEDGE_ENV: "10"})
        cluster.wait(lambda: cluster.running(0) == set(bots), 60, "shard 0 running its bots")
        pids = cluster.worker_pids(0)
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            cluster.signal(0, signal.SIGUSR1)  # the loop sleeps 10 s: no lapse timer can fire
            time.sleep(0.2)
            proxy.cut()
            gone: dict[str, float] = {}
            deadline = time.monotonic() + 15
            while len(gone) < len(pids) and time.monotonic() < deadline:
                for bot, pid in pids.items():
                    if bot not in gone and _ended(pid):
                        gone[bot] = time.time()
                time.sleep(0.01)
            assert set(gone) == set(pids), "workers outlived their leases while the loop was wedged"
            expiry = dict(conn.execute(
                "SELECT bot, extract(epoch FROM expires_at)::float8 FROM botvisor_lease").fetchall())
        for bot, when in gone.items():
            assert when < expiry[bot], f"{bot}: killed {when - expiry[bot]:.2f} s after its lease expired"
        assert "the loop is wedged and its lease ended" in cluster.log(0)
    finally:
        cluster.close()
        proxy.stop()


def test_a_graceful_stop_hands_every_bot_over_and_the_same_shard_takes_them_back_at_once(
        cluster: LocalCluster, database: str) -> None:
    import psycopg

    bots = set(BOTS)
    cluster.start(0, 1)
    cluster.wait(lambda: cluster.running(0) == bots, 60, "shard 0 running its bots")
    assert cluster.stop(0) == 0  # SIGTERM: a rolling update, a node drain, systemctl stop
    with psycopg.connect(database, autocommit=True) as conn:
        leases = conn.execute("SELECT bot, owner, token FROM botvisor_lease").fetchall()
        snapshots = dict(conn.execute("SELECT bot, token FROM botvisor_snapshot").fetchall())
    assert {bot for bot, owner, _t in leases if owner is None} == bots, "every lease released"
    assert snapshots == {bot: token for bot, _o, token in leases}, "a snapshot under each lease's token"
    cluster.start(0, 1)
    cluster.wait(lambda: cluster.running(0) == bots, 60, "shard 0 running its bots again")
    log = cluster.log(0)
    # released leases are taken at once, not after lease_ttl (a SIGKILLed shard's successor waits)
    second = log[log.rindex("lease owner"):]
    stamps = re.findall(r"^(\S+)Z .*?(?:lease owner|lease 2 taken)", second, re.M)
    booted, first_taken = (datetime.fromisoformat(s) for s in (stamps[0], stamps[1]))
    assert (first_taken - booted).total_seconds() < cluster.timings["lease_ttl"] / 2
    assert log.count("keeping the local directory of lease 1") == len(bots)  # its own copy is as new
    assert "did not hand over" not in log
    assert cluster.overlaps() == [] and cluster.replaced() == []


def test_resharding_while_a_shard_is_dead_moves_its_bots_after_expiry_and_says_their_state_stayed_behind(
        cluster: LocalCluster) -> None:
    plan = start_all(cluster, 3)
    cluster.kill(2)  # dead, never handing over
    killed_at = time.time()
    cluster.close_runs_of(2, killed_at)
    new_plan = planned(2)
    for k in range(2):
        cluster.write(k, 2)
        cluster.signal(k, signal.SIGHUP)
    for k in range(2):
        cluster.wait(lambda k=k: cluster.running(k) == new_plan[k], 60, f"shard {k} running shard 2's bots too")
    starts = {c.bot: c.ts for k, c in cluster.events if c.ts > killed_at and c.state.value == "initializing"}
    assert set(starts) == plan[2]  # only the dead shard's bots moved (rendezvous hashing)
    assert min(starts.values()) >= killed_at + 1.0, "taken before the dead shard's leases expired"
    log = cluster.log(0) + cluster.log(1)
    for bot in plan[2]:
        assert re.search(rf"{bot}: lease 2 taken .*did not hand over", log), f"{bot}: no warning that its state stayed"
    assert cluster.overlaps() == [] and cluster.replaced() == []


def test_the_fleet_view_reaches_every_shard_over_tcp_with_curve(tmp_path: Path, database: str) -> None:
    bots = BOTS[:10]
    cluster = LocalCluster(tmp_path, database, bots, tcp=True)
    try:
        table = assignment([BotConfig(id=b) for b in bots], 2)
        for k in range(2):
            cluster.start(k, 2)
        for k in range(2):
            want = {b for b, s in table.items() if s == k}
            cluster.wait(lambda k=k, want=want: cluster.running(k) == want, 60, f"shard {k} running")
        assert cluster.shard(1).endpoint("control").startswith("tcp://127.0.0.1:")
        view = fleet_status(cluster, 1)
        assert view.returncode == 0, view.stderr
        assert {b["bot_id"]: b["shard"] for b in json.loads(view.stdout)["bots"]} == table
        tap = subprocess.run([sys.executable, "-m", "supervisor.cli", "tap", "-c", str(cluster.shard(0).config),
                              "--fleet", "--json", "--type", "heartbeat", "--count", "40", "--timeout", "60"],
                             cwd=REPO, capture_output=True, text=True, timeout=90)
        assert tap.returncode == 0, tap.stderr
        lines = [json.loads(line) for line in tap.stdout.splitlines()]
        assert {line["shard"] for line in lines} == {0, 1}
        assert all(table[line["bot"]] == line["shard"] for line in lines)
    finally:
        cluster.close()
