"""The ``botvisor`` command: one module per subcommand, registered in SUBCOMMANDS.

Each module has ``add_arguments(parser)`` and ``execute(args) -> int`` (an exit code); its
docstring's first line is its help.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from . import (
    check_config,
    creds,
    health,
    gateway,
    history,
    keys,
    logout,
    logs,
    reload,
    restart,
    run,
    send,
    simulate,
    start,
    status,
    stop,
    tap,
    top,
    wa,
    webhooks,
)

#: subcommand name -> module (or an object shaped like one: cli/wa.py)
SUBCOMMANDS: dict[str, ModuleType | wa.Operation] = {
    "run": run,
    "check-config": check_config,
    "tap": tap,
    "status": status,
    "start": start,
    "stop": stop,
    "restart": restart,
    "reload": reload,
    "history": history,
    "send": send,
    "simulate": simulate,
    "logout": logout,
    "top": top,
    "keys": keys,
    "creds": creds,
    "logs": logs,
    "health": health,
    **wa.COMMANDS,
    "gateway": gateway,
    "webhooks": webhooks,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botvisor", description="Supervise a fleet of WhatsApp bots.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        doc = (module.__doc__ or "").strip()
        command = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(execute=module.execute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.execute(args)
        sys.stdout.flush()  # a closed pipe shows here, still inside the handler below
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`botvisor status --json | head`): no traceback, and none again
        # when the interpreter flushes stdout on exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
