"""Run the HTTP gateway (REST API, live stream, webhooks), or manage its API keys.

`botvisor gateway -c FILE` serves [gateway] listen; `botvisor gateway keys add NAME [--bots GLOB
...] [--read-only]` prints a new key once, `keys list`, `keys revoke NAME`. docs/http.md.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gateway.cli import add_gateway_arguments

    add_gateway_arguments(parser)


def execute(args: argparse.Namespace) -> int:
    from gateway.cli import execute_gateway

    return execute_gateway(args)
