"""``python -m bench.reshard``: resharding a live fleet from 3 to 4 shards, all on this host.

Three shards (real ``botvisor run`` processes, simulated bots, one PostgreSQL this script starts,
fsync on) run the fleet; a fourth starts, the three reload with ``shards = 4``. Measured from the
shards' taps: how many bots moved (rendezvous hashing predicts about a quarter), each moved bot's
downtime (its old worker told to stop -> its new worker running on shard 3), and the double
owners: moments two shards ran one bot (taps), and StreamReplaced records of the simulated
server. Lease timings are the defaults unless --fast. Every process started is killed by pid.

    python -m bench.reshard --bots 300      # the full run (several minutes on 2 cores)
    python -m bench.reshard --bots 60       # a small one
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(bots: int, fast: bool) -> dict:
    sys.path.insert(0, str(REPO))
    from protocol.config import BotConfig
    from supervisor.cluster.sharding import assignment, moves
    from tests.pgserver import PostgresServer

    from .shards import FAST, LocalCluster

    ids = [f"bot{i:04d}" for i in range(bots)]
    configs = [BotConfig(id=b) for b in ids]
    plan3, plan4 = assignment(configs, 3), assignment(configs, 4)
    moved = {m.bot: m for m in moves(configs, 3, 4)}
    pg = PostgresServer(durable=True).start()
    root = Path(tempfile.mkdtemp(prefix="bv-reshard-"))
    timings = FAST if fast else {"lease_ttl": 15.0, "renew_interval": 3.0, "stop_margin": 5.0, "lapse_grace": 2.0}
    cluster = LocalCluster(root, pg.create_database("reshard"), ids, timings=timings)
    try:
        boot = time.monotonic()
        for k in range(3):
            cluster.start(k, 3, timeout=120)
        for k in range(3):
            want = {b for b, s in plan3.items() if s == k}
            cluster.wait(lambda k=k, want=want: cluster.running(k) == want, 600, f"shard {k} up")
        booted = time.monotonic() - boot
        cluster.start(3, 4, timeout=120)
        began = time.time()
        t0 = time.monotonic()
        for k in range(3):
            cluster.write(k, 4)
            cluster.signal(k, signal.SIGHUP)
        for k in range(4):
            want = {b for b, s in plan4.items() if s == k}
            cluster.wait(lambda k=k, want=want: cluster.running(k) == want, 600, f"shard {k} after 3 -> 4")
        settled = time.monotonic() - t0
        downtime = []
        for bot, m in moved.items():
            stopped = min(c.ts for k, c in cluster.events if k == m.source and c.bot == bot and c.ts >= began
                          and c.state.value == "stopping")
            running = min(c.ts for k, c in cluster.events if k == 3 and c.bot == bot and c.state.value == "running")
            downtime.append(running - stopped)
        restarted = {c.bot for k, c in cluster.events if c.bot not in moved and c.ts >= began
                     and c.state.value == "stopping"}
        downtime.sort()
        return {
            "bots": bots, "moved": len(moved), "moved_share": round(len(moved) / bots, 3),
            "expected_share": 0.25, "stayed_but_restarted": len(restarted),
            "downtime_p50_s": round(statistics.median(downtime), 3),
            "downtime_p90_s": round(downtime[int(0.9 * (len(downtime) - 1))], 3),
            "downtime_max_s": round(downtime[-1], 3),
            "reshard_settled_s": round(settled, 2), "boot_s": round(booted, 2),
            "double_owners_taps": len(cluster.overlaps()), "stream_replaced": len(cluster.replaced()),
            "lease_timings": timings,
        }
    finally:
        cluster.close()
        pg.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reshard", description=__doc__.splitlines()[0])
    p.add_argument("--bots", type=int, default=300, help="simulated bots in the fleet (default 300)")
    p.add_argument("--fast", action="store_true", help="the tests' short lease timings instead of the defaults")
    args = p.parse_args(argv)
    result = run(args.bots, args.fast)
    print(json.dumps(result, indent=2))
    rows = [("bots", result["bots"]), ("moved", f"{result['moved']} ({result['moved_share']:.1%}, ideal 25%)"),
            ("stayed but restarted", result["stayed_but_restarted"]),
            ("downtime of a moved bot p50 / p90 / max", f"{result['downtime_p50_s']:.3f} / "
             f"{result['downtime_p90_s']:.3f} / {result['downtime_max_s']:.3f} s"),
            ("all four shards settled after", f"{result['reshard_settled_s']:.2f} s"),
            ("double owners (taps / StreamReplaced)", f"{result['double_owners_taps']} / {result['stream_replaced']}")]
    print("\n| resharding 3 -> 4 | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0 if result["double_owners_taps"] == 0 and result["stream_replaced"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
