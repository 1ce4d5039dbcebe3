"""Start bots (from stopped, failed or backoff): botvisor start BOT... | --all

Prints each bot's container state before and after; the transitions that follow are on the
tap. A bot whose temporary ban has not expired is refused (with the expiry) unless --force; a
banned bot starts by itself when its ban expires. Exits 1 when the supervisor refuses (an
unknown bot, a ban), 3 when no supervisor answers.
"""

from __future__ import annotations

import argparse

from . import lifecycle



def add_arguments(parser: argparse.ArgumentParser) -> None:
    lifecycle.add_arguments(parser)
    parser.add_argument("--force", action="store_true",
                        help="start even while a temporary ban has not expired (it may prolong the ban)")


def execute(args: argparse.Namespace) -> int:
    return lifecycle.run(args, "start")
