"""Webhook endpoints and dead letters: list, retry, purge, pause, resume (docs/webhooks.md).

Works on the gateway's outbox file, running gateway or not; a running one applies changes
within a second.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gateway.cli import add_webhooks_arguments

    add_webhooks_arguments(parser)


def execute(args: argparse.Namespace) -> int:
    from gateway.cli import execute_webhooks

    return execute_webhooks(args)
