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
    add_timeout_argument(parser)


def execute(args: argparse.Namespace) -> int:
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
