"""What every subcommand shares: finding the config file and the supervisor it describes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from protocol import exit_codes
from protocol.config import Config, ConfigError, default_config_path, load_config

#: the command did what was asked
EXIT_OK = 0
#: the supervisor or the worker refused or failed (the message says why); status: a bot is unwell
EXIT_FAILURE = 1
#: bad command line
EXIT_USAGE = 2
#: no supervisor answers on the config's control endpoint
EXIT_NOT_RUNNING = 3


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None,
                        help="the TOML file (default: $BOTVISOR_CONFIG, else ./botvisor.toml)")


def add_timeout_argument(parser: argparse.ArgumentParser, default: float = 5.0) -> None:
    parser.add_argument("--timeout", type=float, default=default, metavar="S",
                        help=f"seconds to wait for the supervisor (default {default:g})")


def load_or_exit(args: argparse.Namespace) -> Config:
    path = args.config or default_config_path()
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"botvisor: {exc}", file=sys.stderr)
        raise SystemExit(exit_codes.CONFIG_ERROR) from None


def load_for_client(args: argparse.Namespace) -> Config:
    """The config for talking to the supervisor: a typo in the fleet part is a warning, not exit 78."""
    from protocol.client_config import load_client_config

    path = args.config or default_config_path()
    try:
        config, problem = load_client_config(path)
    except ConfigError as exc:
        print(f"botvisor: {exc}", file=sys.stderr)
        raise SystemExit(exit_codes.CONFIG_ERROR) from None
    if problem is not None:
        print(f"botvisor: warning: {problem} (fix it before the next reload; using its endpoints)", file=sys.stderr)
    return config


def load_for_service(args: argparse.Namespace) -> Config:
    """``load_or_exit`` plus what only the user running the service can tell: every directory
    it creates must be writable by this user (else exit 78 naming the key)."""
    from protocol.config_checks import writable_problems

    config = load_or_exit(args)
    problems = writable_problems(config)
    for key, why in problems:
        print(f"botvisor: {config.path}: {key}: {why}", file=sys.stderr)
    if problems:
        raise SystemExit(exit_codes.CONFIG_ERROR)
    return config


def fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"botvisor: {message}", file=sys.stderr)
    return code


def control(args: argparse.Namespace, command: str, request_args: dict[str, Any] | None = None,
            timeout: float | None = None) -> Any:
    """Run one control command against the config's supervisor; on failure print why and exit
    (EXIT_NOT_RUNNING when no supervisor answers, EXIT_FAILURE when it refused)."""
    from protocol.client import ControlClient, ControlError, NotRunning

    config = load_for_client(args)
    wait = timeout if timeout is not None else getattr(args, "timeout", 5.0)
    try:
        with ControlClient.for_config(config, timeout=wait) as client:
            return client.call(command, request_args or {})
    except NotRunning as exc:
        raise SystemExit(fail(f"{exc} (config {config.path})", EXIT_NOT_RUNNING)) from None
    except ControlError as exc:
        raise SystemExit(fail(f"{command}: {exc}")) from None


def bot_call(args: argparse.Namespace, method: str, *call_args: Any, **call_kwargs: Any) -> Any:
    """Call BotHandle.``method`` on ``args.bot`` (the path library users take too); on failure
    print why and exit as ``control`` does."""
    from protocol.client import ControlError, NotRunning
    from protocol.handle import BotHandle

    config = load_for_client(args)
    try:
        with BotHandle.for_config(config, args.bot, timeout=args.timeout) as bot:
            return getattr(bot, method)(*call_args, **call_kwargs)
    except NotRunning as exc:
        raise SystemExit(fail(f"{exc} (config {config.path})", EXIT_NOT_RUNNING)) from None
    except ControlError as exc:
        raise SystemExit(fail(f"{args.bot}: {exc}")) from None
