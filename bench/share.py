"""The supervisor's share under a busy fleet: N simulated workers flat out, with botvisor's CPU
share (supervisor/cgroups.py) and without it ($BOTVISOR_CPU_SHARE=off, the workers' nice only).

For each: events relayed to a sink on the tap (and loss), the supervisor's CPU (percent of one
core: its share), and the ``status`` round trip measured while the flood runs (an operator
asking a busy fleet how it is). The bare relay's ceiling comes from bench/eventpath.py.

    python -m bench.share --sizes 50,200 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import configs
from .eventpath import FLAT_OUT_PER_WORKER, SinkWindow, _sink_result, _status, relay_run
from .procs import Reaper, install_signal_handlers
from .subjects import Botvisor

STATUS_CALLS = 10


def busy_fleet(root: Path, n: int, reaper: Reaper, seconds: float, share: bool, warmup: float = 2.0) -> dict[str, Any]:
    """N workers flat out for ``seconds``: relayed, lost, supervisor CPU, status round trips."""
    from supervisor.cgroups import ENV

    hold = 5.0 + n * 0.05  # the flood begins once every bot runs
    settings = configs.BotvisorSettings(n=n, message_rate=FLAT_OUT_PER_WORKER, connect_delay=hold)
    subject = Botvisor(root, settings, reaper)
    saved = os.environ.get(ENV)
    os.environ[ENV] = "on" if share else "off"
    try:
        started = time.monotonic()
        subject.start()
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved
    try:
        window = SinkWindow.open(subject, root, reaper, started, hold, warmup, seconds)
        rtts = []
        for _ in range(STATUS_CALLS):  # spread over the measured window
            begin = time.perf_counter()
            try:
                _status(subject, timeout=30)
                rtts.append(time.perf_counter() - begin)
            except Exception:
                rtts.append(float("inf"))
            time.sleep(max(0.0, seconds / STATUS_CALLS - (time.perf_counter() - begin)))
        out = _sink_result(window.sink, window.log, warmup + seconds + 30)
        out["supervisor_cpu_pct"] = window.supervisor_cpu_pct()
        status = _status(subject, timeout=60)
        out["events_lost"] = sum(b["events_lost"] for b in status["bots"])
        out["status_rtt_median"] = statistics.median(rtts)
        out["status_rtt_max"] = max(rtts)
        out["status_rtts_ms"] = [round(r * 1000, 2) for r in rtts]  # in order: is the slow one the first?
        out["share"] = share
        out["cgroup"] = (root / "daemon.log").read_text(errors="replace").count("CPU share: cgroup")
        out["load"] = os.getloadavg()
        return out
    finally:
        subject.close()


def run(sizes: list[int], seconds: float, reaper: Reaper, workdir: Path, relay: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for n in sizes:
        size: dict[str, Any] = {}
        for share in (True, False):
            key = "share" if share else "nice_only"
            try:
                size[key] = busy_fleet(workdir / f"share{n}-{key}", n, reaper, seconds, share)
            except Exception as exc:  # the other figures still count
                size[key] = {"error": f"{type(exc).__name__}: {exc}"}
        if relay:
            size["ceiling"] = relay_run(workdir / f"relay{n}", n, reaper, 2.0, seconds)
            size["ceiling"]["load"] = os.getloadavg()
        results[str(n)] = size
    return results


def _ms(seconds: float) -> str:
    return "timed out" if seconds == float("inf") else f"{seconds * 1000:.1f} ms"


def table(results: dict[str, Any]) -> str:
    rows = ["| N | mechanism | relayed | of the bare relay | lost | supervisor CPU | status round trip (median / max) "
            "| load (1/5/15 min) |", "|---|---|---|---|---|---|---|---|"]
    for n, size in results.items():
        ceiling = size.get("ceiling", {}).get("rate")
        for key, label in (("share", "cgroup share (supervisor/cgroups.py)"), ("nice_only", "nice only (off)")):
            r = size.get(key, {})
            if "error" in r:
                rows.append(f"| {n} | {label} | failed: {r['error']} | | | | | |")
                continue
            ratio = f"{r['rate'] / ceiling * 100:.1f} %" if ceiling else "n/a"
            load = "/".join(f"{x:.1f}" for x in r["load"])
            rows.append(f"| {n} | {label}{'' if r['cgroup'] or key != 'share' else ' (no cgroup!)'} | "
                        f"{r['rate']:,.0f}/s | {ratio} | {r['gaps'] + r['events_lost']} | "
                        f"{r['supervisor_cpu_pct']:.0f} % | {_ms(r['status_rtt_median'])} / {_ms(r['status_rtt_max'])} "
                        f"| {load} |")
        if ceiling:
            load = "/".join(f"{x:.1f}" for x in size["ceiling"]["load"])
            rows.append(f"| {n} | bare pyzmq+msgpack relay | {ceiling:,.0f}/s | 100 % | {size['ceiling']['gaps']} | "
                        f"{size['ceiling']['relay_cpu_pct']:.0f} % | n/a | {load} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.share", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,200")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-relay", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    install_signal_handlers()
    reaper = Reaper()
    try:
        with tempfile.TemporaryDirectory(prefix="botvisor-share-") as tmp:
            results = run([int(s) for s in args.sizes.split(",")], args.seconds, reaper, Path(tmp),
                          relay=not args.no_relay)
    finally:
        reaper.kill_all()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
