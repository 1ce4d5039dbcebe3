"""Issue 18's figures in one command: the hot path, the supervisor's share under a busy fleet,
idle CPU and latency at N = 200, and a neonize fleet's start and memory. Tables with ratios
against the targets, each with the machine's load average beside it.

    python -m bench.issue18                                  # the lead's full run (quiet machine)
    python -m bench.issue18 --sizes 50 --seconds 3 --idle 10 --neonize-n 8 --hotpath-events 5000
    python -m bench.issue18 --only hotpath,neonize           # a part

CPU figures are CPU time (time.process_time, psutil cpu_times), not wall time; ``--instructions``
adds instructions per event (valgrind's callgrind), which other load cannot move.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import configs, eventpath, hotpath, neonize_memory, scenarios, share
from .procs import BenchTimeout, Reaper, install_signal_handlers, wait_until
from .subjects import Botvisor

PARTS = ("hotpath", "share", "idle", "latency", "neonize")
MIB = 2**20


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def idle(root: Path, n: int, heartbeat: float, seconds: float, reaper: Reaper) -> dict[str, Any]:
    """The supervisor's CPU with N idle workers (tap connected), and per heartbeat."""
    subject = Botvisor(root, configs.BotvisorSettings(n=n, heartbeat_interval=heartbeat), reaper)
    try:
        scenarios.cold_start(subject, 60 + n)
        scenarios.settle(subject, 2.0)
        out = scenarios.idle(subject, seconds)
        beats = n * out["seconds"] / heartbeat
        out["us_per_heartbeat"] = out["cpu_pct"] / 100 * out["seconds"] / beats * 1e6
        out["load"] = _load()
        return out
    finally:
        subject.close()


def neonize_fleet(root: Path, n: int, reaper: Reaper) -> dict[str, Any]:
    """N neonize bots: all hellos, all dialled, memory (and where one worker's USS goes)."""
    subject = Botvisor(root, configs.BotvisorSettings(n=n, backend="neonize"), reaper)
    try:
        cold = scenarios.cold_start(subject, 120 + n * 0.5)
        tap = subject.tap
        assert tap is not None
        try:
            wait_until(lambda: len(tap.first_dial) >= n, 120 + n * 0.5, f"{n} first dials", interval=0.05)
            with tap.lock:
                cold["all_dialled"] = max(tap.first_dial.values()) - subject.started_at
        except BenchTimeout as exc:
            cold["all_dialled_error"] = str(exc)
        time.sleep(1.0)
        memory = scenarios.memory(subject)
        pids = sorted(subject.live_workers())
        memory["breakdown"] = neonize_memory.breakdown(pids[len(pids) // 2]) if pids else {}
        return {"cold": cold, "memory": memory, "load": _load()}
    finally:
        subject.close()


def run(args: argparse.Namespace, reaper: Reaper, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": _load(),
                           "cores": os.cpu_count()}
    parts = args.only.split(",") if args.only else PARTS
    sizes = [int(s) for s in args.sizes.split(",")]

    def attempt(name: str, fn: Any) -> None:
        print(f"-- {name} (load {_load()})", file=sys.stderr, flush=True)
        try:
            out[name] = fn()
        except Exception as exc:  # the other parts still count
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}

    # the parts that the machine's load moves most come first, before the busy-fleet runs load it
    if "idle" in parts:
        attempt("idle", lambda: {f"{hb:g}": idle(work / f"idle{hb:g}", args.n, hb, args.idle, reaper)
                                 for hb in (1.0, 30.0)})
    if "latency" in parts:
        attempt("latency", lambda: {f"{hb:g}": dict(eventpath.botvisor_run(
            work / f"latency{hb:g}", args.n, eventpath.LATENCY_RATE / args.n, reaper, 1.0, args.seconds,
            heartbeat_interval=hb), load=_load()) for hb in (30.0, 1.0)})
    if "hotpath" in parts:
        attempt("hotpath", lambda: {
            "runs": [hotpath.run(args.hotpath_events, 200, mode) for mode in ("handler", "socket")],  # with their load
            "instructions": hotpath.instructions(args.instruction_events, 200) if args.instructions else None,
            "decoders": hotpath.decoders(200), "decoders_load": _load()})
    if "share" in parts:
        attempt("share", lambda: share.run(sizes, args.seconds, reaper, work / "share"))
    if "neonize" in parts and args.neonize_n:
        attempt("neonize", lambda: neonize_fleet(work / "neonize", args.neonize_n, reaper))
    out["load_end"] = _load()
    return out


def _row(target: str, measured: str, ratio: float | None, ok: bool | None, load: str) -> str:
    verdict = "n/a" if ok is None else ("PASS" if ok else "**MISS**")
    return f"| {target} | {measured} | {'' if ratio is None else f'{ratio:.2f}'} | {verdict} | {load} |"


def render(r: dict[str, Any], n: int) -> str:
    text = [f"# Issue 18 figures ({r['started']}, {r['cores']} cores; load at start {r['load_start']}, "
            f"at end {r['load_end']})", "",
            "| target | measured | ratio (measured / limit, or of the relay) | result | load (1/5/15 min) |",
            "|---|---|---|---|---|"]
    hp = r.get("hotpath", {})
    for run_ in hp.get("runs", []):
        us = run_["us_per_event"]
        text.append(_row(f"hot path < 15 µs CPU per event ({run_['mode']} mode, process incl. ZeroMQ's I/O thread)",
                         f"{us:.1f} µs (loop thread {run_['loop_us_per_event']:.1f} µs)", us / 15, us < 15,
                         "/".join(f"{x:.1f}" for x in run_["load"])))
    if hp.get("instructions"):
        text.append(_row("hot path: instructions per event (callgrind)", f"{hp['instructions']:,.0f}", None, None, ""))
    for size, res in r.get("share", {}).items():
        ceiling = res.get("ceiling", {}).get("rate")
        mine = res.get("share", {})
        if "rate" in mine and ceiling:
            need = 0.5 if int(size) >= 200 else 0.7
            ratio = mine["rate"] / ceiling
            ok = ratio >= need and mine["gaps"] + mine["events_lost"] == 0
            text.append(_row(f"N={size} flat out ≥ {need:.0%} of the bare relay, zero loss",
                             f"{mine['rate']:,.0f}/s vs {ceiling:,.0f}/s, {mine['gaps'] + mine['events_lost']} lost",
                             ratio, ok, "/".join(f"{x:.1f}" for x in mine["load"])))
            rtt = mine["status_rtt_max"]
            text.append(_row(f"N={size} status round trip < 20 ms while every worker is busy (max of "
                             f"{share.STATUS_CALLS})", f"{rtt * 1000:.1f} ms (median {mine['status_rtt_median'] * 1000:.1f})",
                             rtt / 0.02, rtt < 0.02, "/".join(f"{x:.1f}" for x in mine["load"])))
    for hb, res in r.get("latency", {}).items():
        if res.get("p99") is not None:
            text.append(_row(f"N={n} p99 < 5 ms at 1,000 events/s, {hb} s heartbeats", f"{res['p99'] * 1000:.2f} ms",
                             res["p99"] / 0.005, res["p99"] < 0.005, res["load"]))
    for hb, res in r.get("idle", {}).items():
        if "cpu_pct" in res:
            limit = 1.0 if hb == "1" else 0.2
            text.append(_row(f"N={n} idle CPU, {hb} s heartbeats < {limit:g} % "
                             f"({res['us_per_heartbeat']:.0f} µs per heartbeat)", f"{res['cpu_pct']:.2f} %",
                             res["cpu_pct"] / limit, res["cpu_pct"] < limit, res["load"]))
    neo = r.get("neonize", {})
    if "memory" in neo:
        m, c = neo["memory"], neo["cold"]
        k = m["workers"]
        text.append(_row(f"{k} neonize bots at hello < 15 s", f"{c['all_hellos']:.2f} s (all dialled: "
                         f"{c.get('all_dialled', float('nan')):.2f} s)", c["all_hellos"] / 15, c["all_hellos"] < 15,
                         neo["load"]))
        text.append(_row("USS per neonize worker < 22 MiB (median)", f"{m['uss'] / MIB:.1f} MiB (RSS {m['rss'] / MIB:.1f},"
                         f" PSS {m['pss'] / MIB:.1f}; fleet PSS {m['fleet_pss'] / MIB:,.0f} MiB)", m["uss"] / MIB / 22,
                         m["uss"] / MIB < 22, neo["load"]))
    for name in ("hotpath", "share", "idle", "latency", "neonize"):
        if isinstance(r.get(name), dict) and "error" in r[name]:
            text.append(f"\n{name} failed: {r[name]['error']}")
    if "share" in r and "error" not in r["share"]:
        text += ["", "## The supervisor's share, N workers flat out", "", share.table(r["share"])]
    if hp.get("runs"):
        text += ["", "## Hot path (bench/hotpath.py)", "", hotpath.table(hp["runs"], hp.get("instructions"))]
    if hp.get("decoders"):
        text += ["", f"Decoders, µs per payload (load {hp['decoders_load']}):", "", hotpath.decoder_table(hp["decoders"])]
    if neo.get("memory", {}).get("breakdown"):
        text += ["", "## Where one neonize worker's private memory (USS) goes", "", "| where | MiB |", "|---|---|"]
        text += [f"| {k} | {v / MIB:.2f} |" for k, v in neo["memory"]["breakdown"].items() if v >= 0.05 * MIB]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.issue18", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,200", help="fleet sizes of the busy-fleet runs")
    parser.add_argument("--n", type=int, default=200, help="fleet size of the idle and latency runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window of each traffic run")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of each idle measurement")
    parser.add_argument("--neonize-n", type=int, default=1000, help="neonize bots (0: skip)")
    parser.add_argument("--hotpath-events", type=int, default=50_000)
    parser.add_argument("--instructions", action="store_true", help="hot path instructions/event (valgrind, slow)")
    parser.add_argument("--instruction-events", type=int, default=2000)
    parser.add_argument("--only", help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--json", type=Path, help="write the raw results here too")
    parser.add_argument("--out", type=Path, help="write the tables here too (markdown)")
    args = parser.parse_args(argv)
    install_signal_handlers()
    reaper = Reaper()
    try:
        with tempfile.TemporaryDirectory(prefix="botvisor-issue18-") as tmp:
            results = run(args, reaper, Path(tmp))
    finally:
        reaper.kill_all()
    if args.json:  # first: a table that cannot be rendered must not lose the figures
        args.json.write_text(json.dumps(results, indent=1, default=str))
    text = render(results, args.n)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
