"""Show a bot's log file (when [supervisor] log_dir is set): its last lines, -f to follow it.

``botvisor logs @supervisor`` shows the supervisor's own file. Following survives rotation:
when the file is renamed to BOT.log.1, the rest of it is read and the new file followed.
Without log_dir everything goes to the supervisor's stderr (journald under systemd): the
command then says how to read it there and exits 2. Exits 1 for an unknown bot or a missing file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

from protocol import SUPERVISOR_BOT

from ..logs import log_file
from .common import add_config_argument, fail, load_or_exit

EXIT_NOT_FOUND = 1
EXIT_NOT_IN_FILES = 2
#: seconds between two looks at a followed file
FOLLOW_INTERVAL = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bot", metavar="BOT", help=f"the bot id ({SUPERVISOR_BOT} for the supervisor's own log)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing lines as they are written")
    parser.add_argument("-n", "--lines", type=int, default=20, metavar="N",
                        help="how many of the last lines to print first (default 20)")


def execute(args: argparse.Namespace) -> int:
    config = load_or_exit(args)
    known = {bot.id for bot in config.bots} | {SUPERVISOR_BOT}
    if config.log_dir is None:
        who = "the supervisor" if args.bot == SUPERVISOR_BOT else f"bot {args.bot}"
        grep = "' bot=- '" if args.bot == SUPERVISOR_BOT else f"' bot={args.bot} '"
        return fail(
            f"{config.path} sets no [supervisor] log_dir, so {who} logs to the supervisor's stderr.\n"
            f"  Under systemd, journald keeps it:  journalctl -u botvisor.service -o cat | grep {grep}\n"
            f"  (add -f after -o cat to follow it). Or set log_dir for one rotated file per bot.",
            EXIT_NOT_IN_FILES)
    path = log_file(config.log_dir, args.bot)
    if args.bot not in known and not path.exists():
        return fail(f"no bot {args.bot!r} in {config.path} (bots: {', '.join(sorted(known - {SUPERVISOR_BOT}))})",
                    EXIT_NOT_FOUND)
    if not path.exists() and not args.follow:
        return fail(f"no log yet at {path} (has {args.bot} run since log_dir was set?)", EXIT_NOT_FOUND)
    out = sys.stdout.buffer
    current = _open(path)
    if current is not None:
        out.write(tail(current, max(0, args.lines)))  # leaves the file at the end it read up to
        out.flush()
    if args.follow:
        follow(path, out, current)
    elif current is not None:
        current.close()
    return 0


def tail(f: BinaryIO, lines: int, block: int = 8192) -> bytes:
    """The last ``lines`` lines of the open file ``f``, read backwards; ``f`` is left at its end."""
    end = f.seek(0, os.SEEK_END)
    data, position = b"", end
    while lines and position > 0 and data.count(b"\n") <= lines:
        step = min(block, position)
        position -= step
        f.seek(position)
        data = f.read(step) + data
    f.seek(end)
    return b"".join(data.splitlines(keepends=True)[-lines:]) if lines else b""


def follow(path: Path, out: BinaryIO, current: BinaryIO | None, interval: float = FOLLOW_INTERVAL) -> None:
    """Print what is appended to ``path`` until interrupted, across rotations (rename + new file)."""
    while True:
        chunk = current.read() if current is not None else b""
        if chunk:
            out.write(chunk)
            out.flush()
            continue
        try:
            on_disk = path.stat()
        except FileNotFoundError:
            on_disk = None
        if on_disk is not None and (current is None or os.fstat(current.fileno()).st_ino != on_disk.st_ino
                                    or on_disk.st_size < current.tell()):
            if current is not None:
                out.write(current.read())  # what was written before the rename
                current.close()
            current = open(path, "rb")  # a new file: from its start
            continue
        time.sleep(interval)


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None
