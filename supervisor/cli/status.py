"""Show each bot's container state, health and counters (--json for scripts).

Exits 1 when any selected bot is failed or unhealthy, 3 when no supervisor answers.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..client import ControlClient, ControlError, NotRunning
from .common import add_config_argument, fail, load_or_exit

EXIT_UNHEALTHY = 1
EXIT_NOT_RUNNING = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bots", nargs="*", metavar="BOT", help="only these bots")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the supervisor")


def execute(args: argparse.Namespace) -> int:
    config = load_or_exit(args)
    try:
        with ControlClient(config.endpoint("control"), timeout=args.timeout) as client:
            result = client.call("status", {"bots": args.bots})
    except NotRunning as exc:
        return fail(str(exc), EXIT_NOT_RUNNING)
    except ControlError as exc:
        return fail(str(exc))
    bots = result["bots"]
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"{'BOT':<16} {'STATE':<12} {'STATUS':<8} {'PID':>7} {'RESTARTS':>8} {'LOST':>5}  REASON")
        for b in bots:
            print(f"{b['bot_id']:<16} {b['container_state']:<12} {b['bot_status']:<8} {b['pid'] or '-':>7} "
                  f"{b['restarts']:>8} {b['events_lost']:>5}  {b['reason'] or ''}")
    bad = [b for b in bots if b["container_state"] == "failed" or
           (b["container_state"] == "running" and not b["is_healthy"])]
    return EXIT_UNHEALTHY if bad else 0
