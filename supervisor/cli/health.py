"""Probe the supervisor: exit 0 when its loop answers within --timeout, 1 when not (3: nobody there).

A liveness probe (Kubernetes ``exec``) checks what systemd's watchdog checks: the loop that keeps
the fleet alive still runs. ``--ready`` also requires the fleet started and, in a [cluster], the
lease keeper connected to PostgreSQL (a shard that cannot reach it runs no bots).
"""

from __future__ import annotations

import argparse

from .common import EXIT_FAILURE, EXIT_OK, add_config_argument, add_timeout_argument, control


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--ready", action="store_true", help="also require the fleet started (and PostgreSQL)")
    add_timeout_argument(parser, default=3.0)


def execute(args: argparse.Namespace) -> int:
    result = control(args, "ping")
    if not args.ready:
        return EXIT_OK
    problems = []
    if not result.get("ready", True):
        problems.append("the fleet is still starting")
    cluster = result.get("cluster")
    if cluster is not None and not cluster.get("database"):
        problems.append(f"shard {cluster.get('shard')} cannot reach PostgreSQL")
    if problems:
        print("not ready: " + "; ".join(problems))
        return EXIT_FAILURE
    return EXIT_OK
