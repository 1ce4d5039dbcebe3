"""Run the supervisor in the foreground (systemd: Type=notify) until SIGTERM or SIGINT.

Exits 0 after a clean shutdown, 78 (EX_CONFIG) when the configuration is invalid (a bot's app
that cannot be imported included: nothing is started), 1 when another supervisor already serves
the same run_dir. --watch (development) restarts a bot when its app's source files change.
"""

from __future__ import annotations

import argparse

from protocol import exit_codes

from .common import add_config_argument, fail, load_for_service


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--watch", action="store_true",
                        help="restart a bot within a second when its app's files change (development)")


def execute(args: argparse.Namespace) -> int:
    config = load_for_service(args)
    from ..appcheck import check_apps

    checks = check_apps(config.bots)  # each app imported once in a throw-away process, in parallel
    broken = [f"bot {bot}: app cannot be loaded: {check.describe()}" for bot, check in checks.items() if not check.ok]
    if broken:
        for line in broken:
            fail(f"{config.path}: {line}")
        return exit_codes.CONFIG_ERROR
    from ..arbiter import Supervisor
    from ..logs import configure_supervisor_logging
    from ..sockets import AlreadyRunning, RunDirError
    from worker.lifeline import set_title

    set_title(f"botvisor supervisor {config.supervisor.server_name} ({config.path})")
    try:
        configure_supervisor_logging(config.supervisor.log_level, config.log_dir, config.supervisor.log_max_bytes,
                                     config.supervisor.log_backups)
    except OSError as exc:  # e.g. made unwritable since check-config
        return fail(f"cannot write logs to log_dir {config.log_dir}: {exc.strerror or exc}")
    from protocol.config import ConfigError

    watcher = None
    if getattr(args, "watch", False):
        from ..watch import AppWatcher

        watcher = AppWatcher(config, {bot: check.watch for bot, check in checks.items()})
        watcher.start()
    try:
        return Supervisor(config).run()
    except (AlreadyRunning, RunDirError) as exc:
        return fail(str(exc))
    except ConfigError as exc:  # e.g. [cluster] shard = "auto" on a host with no ordinal
        return fail(str(exc), exit_codes.CONFIG_ERROR)
    finally:
        if watcher is not None:
            watcher.stopping.set()
