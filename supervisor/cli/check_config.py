"""Validate a configuration file (and import each bot's app in a throw-away process); exit 78 when invalid."""

from __future__ import annotations

import argparse
import sys

from protocol import exit_codes

from .common import add_config_argument, load_for_service


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--shards", nargs="*", type=int, default=None, metavar="N",
                        help="[cluster]: print which shard runs each bot, and what changing the number of "
                             "shards to each N would move (default: one fewer and one more)")


def execute(args: argparse.Namespace) -> int:
    config = load_for_service(args)
    if args.shards is not None:
        return _shards(config, args.shards)
    from ..appcheck import broken_apps

    problems = broken_apps(config.bots)  # each app imported in a throw-away process
    if problems:
        for line in problems:
            print(f"botvisor: {config.path}: {line}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    sup = config.supervisor
    print(f"{config.path}: OK")
    print(f"  server {sup.server_name!r}, auth {config.auth_root}, run {config.run_dir}")
    print(f"  heartbeat every {sup.heartbeat_interval:g} s, stale after "
          f"{sup.heartbeat_timeout or 3 * sup.heartbeat_interval:g} s; backoff {sup.backoff.initial:g} s x"
          f"{sup.backoff.factor:g} up to {sup.backoff.max:g} s, at most {sup.backoff.max_restarts} restarts "
          f"in {sup.backoff.restart_window:g} s")
    for role in ("events", "tap", "control", "commands"):
        print(f"  {role:<9} {config.endpoint(role)}")
    print(f"  {len(config.bots)} bot(s):")
    for bot in config.bots:
        extra = "" if bot.autostart else " (autostart off)"
        app = f" app {bot.app}" if bot.app else ""
        print(f"    {bot.id:<20} {bot.backend:<10} {config.bot_dir(bot.id)}{extra}{app}")
    return 0


def _shards(config, other: list[int]) -> int:
    from supervisor.cluster.sharding import report

    from .common import fail

    if config.cluster is None:
        return fail(f"{config.path}: no [cluster] table: every bot runs on this one host")
    n = config.cluster.shards
    print(report(config, other or [m for m in (n - 1, n + 1) if m >= 1]))
    return 0
