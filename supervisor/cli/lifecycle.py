"""What start, stop and restart share: the BOT...|--all arguments and the report."""

from __future__ import annotations

import argparse

from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_config_argument,
    add_timeout_argument,
    control,
    fail,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bots", nargs="*", metavar="BOT", help="the bots to act on")
    parser.add_argument("--all", action="store_true", help="every configured bot")
    add_timeout_argument(parser)


def run(args: argparse.Namespace, action: str) -> int:
    if bool(args.bots) == bool(args.all):
        return fail(f"{action}: give bot ids or --all (not both)", EXIT_USAGE)
    request = {"all": True} if args.all else {"bots": args.bots}
    if getattr(args, "force", False):
        request["force"] = True
    result = control(args, action, request)
    refused = False
    for bot_id, change in sorted(result.items()):
        before, after = change["before"], change["after"]
        if change.get("refused"):
            refused = True
            print(f"{bot_id}: {action} refused: {change['refused']}")
            continue
        what = f"{before} -> {after}" if before != after else f"already {after}"
        print(f"{bot_id}: {action} requested, {what}")
    if not result:
        print("no bot is configured")
    return EXIT_FAILURE if refused else EXIT_OK
