"""Re-read the configuration file, as SIGHUP does; say whether it was applied or refused.

Added bots start, removed bots stop, changed bots restart, every other bot keeps running
untouched.

A file that does not validate is refused: the reason is printed, the fleet is left as it was,
and the exit code is 1.
"""

from __future__ import annotations

import argparse

from .common import EXIT_OK, add_config_argument, add_timeout_argument, control


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    add_timeout_argument(parser)


def execute(args: argparse.Namespace) -> int:
    result = control(args, "reload")
    print(result.get("message") or "reloaded")
    return EXIT_OK
