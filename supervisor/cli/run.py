"""Run the supervisor in the foreground (systemd: Type=notify) until SIGTERM or SIGINT.

Exits 0 after a clean shutdown, 78 (EX_CONFIG) when the configuration is invalid, 1 when
another supervisor already serves the same run_dir.
"""

from __future__ import annotations

import argparse

from .common import add_config_argument, fail, load_for_service


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def execute(args: argparse.Namespace) -> int:
    config = load_for_service(args)
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
    try:
        return Supervisor(config).run()
    except (AlreadyRunning, RunDirError) as exc:
        return fail(str(exc))
