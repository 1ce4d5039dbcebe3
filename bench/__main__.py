"""``python -m bench``: botvisor against circus and supervisord, and its event path against a bare relay.

Prints the tables and writes them to bench/RESULTS.md (see bench/README.md). Every process it
starts is killed by pid when it ends, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from . import report
from .procs import Reaper, install_signal_handlers
from .runner import Options, Runner, log

HERE = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Options]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50,200", help="fleet sizes, comma-separated (default 50,200)")
    p.add_argument("--kills", type=int, default=20, help="single crashes per size (default 20)")
    p.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement (default 30)")
    p.add_argument("--fast-heartbeat", type=float, default=1.0, help="the fast heartbeat_interval (default 1)")
    p.add_argument("--stop-timeout", type=float, default=None,
                   help="botvisor's stop_timeout in the bench config (default: botvisor's default)")
    p.add_argument("--peer-hang-bound", type=float, default=4.0,
                   help="seconds to wait for a peer to notice a SIGSTOPped worker (default 4)")
    p.add_argument("--event-seconds", type=float, default=3.0, help="event path measurement window (default 3)")
    p.add_argument("--max-rate", type=float, default=64000.0,
                   help="highest offered events/s of the throughput steps (2,000 doubled; default 64,000)")
    p.add_argument("--warmup", type=float, default=2.0, help="event path warm-up seconds (default 2)")
    p.add_argument("--settle", type=float, default=0.5, help="seconds to let a fleet settle after start (default 0.5)")
    p.add_argument("--profile-seconds", type=float, default=4.0, help="py-spy the flat-out supervisor (0: off)")
    p.add_argument("--neonize-n", type=int, default=None, help="neonize fleet size (default: the largest size; 0: off)")
    p.add_argument("--no-peers", action="store_true", help="measure botvisor alone")
    p.add_argument("--peers", default="supervisord,circus,circus-cd1",
                   help="peers to run, comma-separated (default supervisord,circus,circus-cd1)")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="markdown results (default bench/RESULTS.md)")
    p.add_argument("--json", type=Path, default=None, help="also write the raw results as JSON")
    p.add_argument("--notes", type=Path, default=None, help="a markdown file inserted under the machine description")
    p.add_argument("--render", type=Path, default=None, metavar="JSON",
                   help="only re-render --out from the --json file of an earlier run")
    p.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a new one under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, configs)")
    args = p.parse_args(argv)
    options = Options(sizes=[int(s) for s in args.sizes.split(",") if s], kills=args.kills, idle=args.idle,
                      fast_heartbeat=args.fast_heartbeat, stop_timeout=args.stop_timeout,
                      peer_hang_bound=args.peer_hang_bound, event_seconds=args.event_seconds, warmup=args.warmup,
                      settle=args.settle, profile_seconds=args.profile_seconds, peers=not args.no_peers,
                      neonize_n=args.neonize_n, seed=args.seed,
                      max_rate=args.max_rate, peer_names=tuple(x for x in args.peers.split(",") if x))
    unknown = set(options.peer_names) - {"supervisord", "circus", "circus-cd1"}
    if unknown:
        p.error(f"unknown peer(s) {', '.join(sorted(unknown))} (known: supervisord, circus, circus-cd1)")
    return args, options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["webhooks"]:  # the gateway's bench (bench/webhooks.py), on its own
        from . import webhooks

        return webhooks.main(argv[1:])
    args, options = parse(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        text = report.render(results, args.notes.read_text() if args.notes else "")
        args.out.write_text(text + "\n")
        print(text)
        return 0
    install_signal_handlers()
    # short paths: ipc:// socket paths must stay under ~100 characters
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bvb-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    reaper = Reaper()
    code = 0
    try:
        results = Runner(options, workdir, reaper).run()
        notes = args.notes.read_text() if args.notes else ""
        text = report.render(results, notes)
        print(text)
        args.out.write_text(text + "\n")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        log(f"wrote {args.out} ({results['elapsed']:.0f} s)")
        code = 1 if results["errors"] else 0
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}): killing everything the bench started")
        code = 130
    finally:
        survivors = reaper.kill_all()
        if survivors:
            log(f"could not kill: {survivors}")
            code = code or 1
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            log(f"scratch kept in {workdir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
