"""The bot's own directory: created private, kept inside the auth root, locked by one worker."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import FatalBotError

LOCK_FILE = ".lock"


def prepare_bot_dir(bot_dir: Path) -> None:
    """Create ``bot_dir`` (and parents) 0700 whatever the umask; refuse a symlink."""
    bot_dir = Path(bot_dir)
    if bot_dir.is_symlink():
        raise FatalBotError("bad-bot-dir", f"{bot_dir} is a symlink; a bot directory must be a real directory",
                            file=str(bot_dir))
    bot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(bot_dir, 0o700)


def lock_bot_dir(bot_dir: Path) -> int:
    """Take the exclusive lock on the bot's directory; FatalBotError if another process holds it.

    The lock lives as long as the returned descriptor (the worker process): the kernel drops it
    however the worker dies, so a crash never leaves a stale lock behind.
    """
    path = Path(bot_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise FatalBotError("dir-locked", f"{bot_dir} is in use by pid {holder}: another worker runs this bot",
                            file=str(path)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
