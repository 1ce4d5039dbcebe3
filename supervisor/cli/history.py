"""Show a bot's recent events, oldest first: botvisor history BOT [-n 20] [--json].

The supervisor keeps the last `event_history` events per bot: connection updates, messages,
credentials, presence and errors (state changes are on the tap, not here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.markup import escape

from .common import EXIT_OK, add_config_argument, add_timeout_argument, control

STYLES = {"error": "red", "connection-update": "blue", "creds-update": "magenta"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bot", metavar="BOT")
    parser.add_argument("-n", "--limit", type=int, default=20, metavar="N", help="the last N events (default 20)")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    add_timeout_argument(parser)


def execute(args: argparse.Namespace) -> int:
    result = control(args, "history", {"bot": args.bot, "limit": max(1, args.limit)})
    events = result["events"]
    if args.json:
        for event in events:
            print(json.dumps(event))
        return EXIT_OK
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 250)
    if not events:
        console.print(f"{args.bot}: no events yet")
    for event in events:
        ts = event["timestamp"]
        clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"
        detail = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in event["data"].items()
                          if k != "qr")
        style = STYLES.get(event["type"], "")
        kind = f"[{style}]{event['type']}[/]" if style else event["type"]
        console.print(f"{clock} {kind} {escape(detail)}", soft_wrap=True)
    return EXIT_OK
