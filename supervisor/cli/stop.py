"""Stop bots: SIGTERM, then SIGKILL after stop_timeout: botvisor stop BOT... | --all

Prints each bot's container state before and after; the transitions that follow are on the
tap. Exits 1 when the supervisor refuses (an unknown bot), 3 when no supervisor answers.
"""

from __future__ import annotations

import argparse

from . import lifecycle

add_arguments = lifecycle.add_arguments


def execute(args: argparse.Namespace) -> int:
    return lifecycle.run(args, "stop")
