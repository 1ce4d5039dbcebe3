"""What every subcommand shares: finding the config file and the supervisor it describes."""

from __future__ import annotations

import argparse
import sys

from protocol import exit_codes

from ..config import Config, ConfigError, default_config_path, load_config


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None,
                        help="the TOML file (default: $BOTVISOR_CONFIG, else ./botvisor.toml)")


def load_or_exit(args: argparse.Namespace) -> Config:
    path = args.config or default_config_path()
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"botvisor: {exc}", file=sys.stderr)
        raise SystemExit(exit_codes.CONFIG_ERROR) from None


def fail(message: str, code: int = 1) -> int:
    print(f"botvisor: {message}", file=sys.stderr)
    return code
