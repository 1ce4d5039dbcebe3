"""``python -m bench.tap_rejoin``: what a fleet tap sees of a shard restarted after a SIGKILL.

One shard (a real ``botvisor run``, simulated bots, one PostgreSQL this script starts) is
SIGKILLed; once its leases have expired, ``botvisor tap --fleet --type state`` is started, and a
second later the shard is started again. PUB/SUB keeps nothing for a subscriber not yet
connected, so every state change the new shard publishes before the tap is back is lost to it:
counted per trial against the shard's own tap (the harness's, which retries every 50 ms and is
connected before the restart). Every process started is killed by pid.

    python -m bench.tap_rejoin --trials 8 --bots 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(trials: int, bots: int) -> list[dict]:
    sys.path.insert(0, str(REPO))
    from tests.pgserver import PostgresServer

    from .shards import LocalCluster

    ids = [f"bot{i:02d}" for i in range(bots)]
    pg = PostgresServer().start()
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="bv-rejoin-")), pg.create_database("rejoin"), ids)
    rows = []
    try:
        cluster.start(0, 1)
        cluster.wait(lambda: cluster.running(0) == set(ids), 120, "the shard running")
        for _ in range(trials):
            cluster.kill(0)
            cluster.close_runs_of(0, time.time())
            time.sleep(cluster.timings["lease_ttl"] + 1.0)  # its leases expire: the bots start at once
            tap = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "tap", "-c", str(cluster.shard(0).config),
                                    "--fleet", "--json", "--type", "state", "--count", str(2 * bots),
                                    "--timeout", "8"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
            try:
                time.sleep(1.0)
                started = time.time()
                cluster.start(0, 1)
                out, _ = tap.communicate(timeout=60)
            finally:
                if tap.poll() is None:
                    tap.kill()
                    tap.wait()
            seen = [json.loads(line)["ts"] for line in out.splitlines()]
            published = sorted(c.ts for _k, c in cluster.events if c.ts > started)
            rows.append({"published": len(published), "seen": len(seen),
                         "first_after_start_s": published[0] - started if published else None,
                         "last_after_start_s": published[-1] - started if published else None})
            cluster.wait(lambda: cluster.running(0) == set(ids), 120, "the shard running again")
    finally:
        cluster.close()
        pg.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--bots", type=int, default=20)
    args = parser.parse_args()
    before = os.getloadavg()
    rows = run(args.trials, args.bots)
    print(f"CPU share: {os.environ.get('BOTVISOR_CPU_SHARE', 'default (on where it may)')}; "
          f"load average before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}")
    print("| trial | state changes published | seen by the fleet tap | first / last after the start (s) |")
    print("|---|---|---|---|")
    for i, r in enumerate(rows):
        span = "-" if r["first_after_start_s"] is None else f"{r['first_after_start_s']:.2f} / {r['last_after_start_s']:.2f}"
        print(f"| {i} | {r['published']} | {r['seen']} | {span} |")
    lost = sum(r["published"] - r["seen"] for r in rows)
    after = os.getloadavg()
    print(f"lost to the tap: {lost} of {sum(r['published'] for r in rows)}; "
          f"load average after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")


if __name__ == "__main__":
    main()
