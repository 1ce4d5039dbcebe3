"""Validate a configuration file and print what it describes; exit 78 when it is invalid."""

from __future__ import annotations

import argparse

from .common import add_config_argument, load_for_service


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def execute(args: argparse.Namespace) -> int:
    config = load_for_service(args)
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
        print(f"    {bot.id:<20} {bot.backend:<10} {config.bot_dir(bot.id)}{extra}")
    return 0
