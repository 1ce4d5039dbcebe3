"""Log a bot out of WhatsApp: botvisor logout BOT.

Its session is deleted on WhatsApp's side and on disk; the worker ends with exit code 78 and
the container goes to ``failed`` (it is not restarted). Pair it again, then `botvisor start`.
"""

from __future__ import annotations

import argparse

from .common import EXIT_OK, add_config_argument, bot_call


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bot", metavar="BOT")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds the bot may take to answer (default: the config's command_timeout)")


def execute(args: argparse.Namespace) -> int:
    result = bot_call(args, "logout")
    reason = result.get("reason") if isinstance(result, dict) else None
    print(f"{args.bot}: {reason or 'logged out'}")
    return EXIT_OK
