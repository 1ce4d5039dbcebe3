"""``python -m bench.chaos``: the chaos soak (see bench/chaos/__init__.py and bench/README.md).

Every process it starts (supervisors, CPU hogs) is killed by pid when it ends, and so is any
fleet process the checks found, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.procs import alive

from . import checks as c
from .actions import Driver, Record
from .fleet import FATAL_BOT, Fleet
from .observe import CleanTap, ProcSampler, RssSampler


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=180.0, help="seconds of chaos (default 180)")
    p.add_argument("--seed", type=int, default=None, help="the driver's seed (default: random, printed)")
    p.add_argument("--json", type=Path, default=None, help="also write the checks to this file")
    p.add_argument("--supervisor-wrapper", default=None, metavar="SCRIPT",
                   help="run the supervisor as `python SCRIPT run -c FILE` (e.g. a tracemalloc wrapper)")
    p.add_argument("--keep", action="store_true", help="keep the fleet's directory (its logs) afterwards")
    return p.parse_args(argv)


def log(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def tree_of(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def kill_pids(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def kill_phase(fleet: Fleet, supervisor: subprocess.Popen[bytes], driver: Driver, record: Record) -> list[c.Check]:
    """SIGKILL the supervisor mid-chaos with workers stopped and one hung; then a new one recovers."""
    checks: list[c.Check] = []
    fleet.entries.append({"id": "hung", "heartbeat_timeout": 60.0, "simulated": {"hang_after": 0.5}})
    fleet.write()
    fleet.control("reload", timeout=10)
    deadline = time.monotonic() + 15
    while "hung" not in driver.refresh_pids(force=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # past hang_after: its loop sleeps in the bot's code from here on
    pids = driver.refresh_pids(force=True)
    stopped = [pids[b] for b in sorted(pids) if b not in ("hung", FATAL_BOT)][:3]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    driver.flood_events()  # mid-chaos
    tree = tree_of(supervisor.pid)
    tree |= {p.pid for p in c.session_members(set(pids.values()))}
    supervisor.kill()
    supervisor.wait(5)
    killed = time.monotonic()
    while any(alive(p) for p in tree) and time.monotonic() - killed < 5:
        time.sleep(0.01)
    took = time.monotonic() - killed
    survivors = [p for p in tree if alive(p)]
    kill_pids(set(survivors))
    checks.append(c.Check("supervisor SIGKILLed: no fleet process survives",
                          f"{len(tree)} processes ({len(stopped)} stopped, 1 hung) gone in {took:.2f} s"
                          + (f", survivors {survivors[:4]}" if survivors else ""), "<= 2 s",
                          not survivors and took <= 2.0))
    fleet.entries[:] = [b for b in fleet.entries if b["id"] != "hung"]  # the operator drops the hanging app
    fleet.write()
    again = fleet.start_supervisor()
    try:
        took2, status = c.converge(fleet, 30.0)
        locked = [b for b, s in status.items() if "dir-locked" in (s.get("reason") or "")]
        checks.append(Check_back(fleet, took2, status, locked))
        _, problems = c.stores(fleet)
        checks.append(c.Check("after the restart: stores intact", f"{len(problems)} bad", "0", not problems))
        tree = tree_of(again.pid)
        again.send_signal(signal.SIGTERM)
        code = again.wait(30)
        gone_by = time.monotonic() + 2.0  # the forkserver and resource tracker follow within moments
        children = c.started_children(fleet)  # of every worker of the soak, both supervisors'
        while (left := [p for p in tree if alive(p)] + [p.pid for p in c.fleet_processes()]
               + c.surviving_children(children, set())) and time.monotonic() < gone_by:
            time.sleep(0.02)
        checks.append(c.Check("clean stop of the new supervisor: nothing left",
                              f"exit {code}, {len(left)} of {len(tree)} processes and {len(children)} children left"
                              + (f" {left[:4]}" if left else ""), "exit 0, 0 left", code == 0 and not left))
    finally:
        kill_pids(tree_of(again.pid) | {again.pid})
        again.wait(5)
    return checks


def Check_back(fleet: Fleet, took: float | None, status: dict, locked: list[str]) -> c.Check:  # noqa: N802
    running = sum(status.get(b, {}).get("container_state") == "running" for b in fleet.should_run())
    return c.Check("a new supervisor brings every bot back, none dir-locked",
                   f"{running}/{len(fleet.should_run())} in " + (f"{took:.1f} s" if took is not None else "> 30 s")
                   + (f", dir-locked {locked}" if locked else ""), "all, <= 30 s, 0 locked",
                   took is not None and not locked)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    fleet = Fleet.create()
    record = Record()
    supervisor = None
    tap = CleanTap(fleet.endpoint("tap"))
    tap.start()
    procs = ProcSampler(tap)
    procs.start()
    log(f"seed {seed}, {args.duration:g} s, fleet in {fleet.root}")
    try:
        supervisor = fleet.start_supervisor(args.supervisor_wrapper)
        if not tap.welcomed.wait(20):
            raise SystemExit("the supervisor did not come up; see " + str(fleet.root / "supervisor.log"))
        took, _ = c.converge(fleet, 30.0)
        log(f"fleet up in {took} s")
        stats_before = fleet.control("status")["stats"]
        rss = RssSampler(supervisor.pid)
        rss.start()
        driver = Driver(fleet, seed, record)
        start = args.duration * 0.4
        driver.run(args.duration, saturate=(start, start + max(5.0, args.duration * 0.15)))
        driver.finish()
        rss.close()
        log(f"chaos done: {dict(record.done)}; reloads {dict(record.reloads)}")
        checks, _ = c.end_of_run(fleet, record, tap, procs, rss, stats_before)
        procs.close()
        for v in c.stale_verdicts(record, tap, procs):
            log(f"stale verdict on a worker nobody stopped: {v.line(tap.started)}, machine I/O stalls "
                f"{v.io_stalled:.1f} s ({v.reason}); "
                + ("blocked on the disk" if v.on_disk else "UNEXPLAINED") + "; its timeline:\n"
                + "\n".join(c.timeline(record, tap, procs, v.bot, v.at)))
        log("SIGKILL phase")
        checks += kill_phase(fleet, supervisor, Driver(fleet, seed + 1, Record()), record)
        print(c.table(seed, args.duration, checks))
        print("\n" + c.rss_table(rss))
        print(f"\nactions: {dict(record.done)}; reloads: {dict(record.reloads)}; "
              f"forged {record.forged_sent}, garbage {record.garbage_sent}; clean tap read {tap.messages} messages")
        if args.json:
            args.json.write_text(json.dumps({"seed": seed, "duration": args.duration,
                                             "checks": [vars(x) for x in checks], "actions": record.done,
                                             "rss": rss.samples, "started": tap.started,
                                             "stale_verdicts": tap.stale_verdicts, "stopped": sorted(record.stopped),
                                             "saturation": record.saturation, "aimed": record.aimed,
                                             "timeline": tap.timeline, "proc_states": procs.samples,
                                             "io_pressure": procs.io_pressure}, indent=1))
        return 0 if all(x.ok for x in checks) else 1
    finally:
        if supervisor is not None:
            kill_pids(tree_of(supervisor.pid) | {supervisor.pid})
            supervisor.wait(5)
        kill_pids({p.pid for p in c.fleet_processes()})
        procs.close()
        tap.close()
        if not args.keep:
            fleet.cleanup()


if __name__ == "__main__":
    sys.exit(main())
