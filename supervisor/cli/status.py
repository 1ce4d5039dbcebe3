"""Show each bot's container state, health and counters (--json for scripts).

Columns: bot id, container state, bot status, pid, uptime, restarts, age of the last
heartbeat, connection attempts, events received, events lost, RSS, CPU and the reason of the
last state change. Exits 1 when any selected bot is failed, in backoff, or running without
fresh heartbeats (usable from monitoring), 3 when no supervisor answers.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from . import table
from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_config_argument,
    add_timeout_argument,
    control,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bots", nargs="*", metavar="BOT", help="only these bots")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--fleet", action="store_true",
                        help="[cluster]: every shard's bots, with a SHARD column (from [cluster] peer_control)")
    add_timeout_argument(parser)


def execute(args: argparse.Namespace) -> int:
    if args.fleet:
        return _fleet(args)
    result = control(args, "status", {"bots": args.bots})
    bots = result["bots"]
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 250)
        title = f"{result['server']} (supervisor pid {result['pid']}): {len(bots)} bot(s)"
        console.print(table.build(sorted(bots, key=lambda b: b["bot_id"]), title=title))
    return EXIT_FAILURE if any(table.is_bad(b) for b in bots) else EXIT_OK


def _fleet(args: argparse.Namespace) -> int:
    from protocol.fleet import fleet_status

    from .common import load_or_exit

    result = fleet_status(load_or_exit(args), timeout=args.timeout)
    bots = [b for b in result["bots"] if not args.bots or b["bot_id"] in args.bots]
    down = [s for s in result["shards"] if "error" in s]
    if args.json:
        json.dump({**result, "bots": bots}, sys.stdout, indent=2)
        print()
    else:
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 250)
        title = (f"{result['server']}: {len(bots)} bot(s) on {len(result['shards'])} shard(s)"
                 + (f", {len(down)} not answering" if down else ""))
        console.print(table.build(sorted(bots, key=lambda b: b["bot_id"]), title=title))
        for shard in down:
            print(f"botvisor: shard {shard['shard']} ({shard['endpoint']}): {shard['error']}", file=sys.stderr)
    return EXIT_FAILURE if down or any(table.is_bad(b) for b in bots) else EXIT_OK
