"""The bot's own directory: created private, kept inside the auth root, locked by one worker.

Never shared: a bot directory is 0700 and its files 0600 whatever the umask; a bot id is
validated and cannot climb out of the auth root; a bot directory that is a symlink is refused
(it would let two bots, or a bot and a stranger, share one session). With a per-bot
``user``/``group`` the supervisor chowns the directory and the worker drops to that identity.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import stat
from pathlib import Path

from protocol import valid_name

from .errors import FatalBotError

LOCK_FILE = ".lock"
#: a worker creates files 0600 and directories 0700 (neonize's SQLite files included)
PRIVATE_UMASK = 0o077


def bot_dir_path(auth_root: Path, server_name: str, bot_id: str) -> Path:
    """``<auth_root>/<server>/bot_<id>``, after checking both names; ValueError when invalid."""
    for what, name in (("server name", server_name), ("bot id", bot_id)):
        if not valid_name(name):
            raise ValueError(f"{name!r} is not a valid {what} (1 to 64 letters, digits, '_' or '-')")
    return Path(auth_root) / server_name / f"bot_{bot_id}"


def check_bot_dir(bot_dir: Path, auth_root: Path | None = None) -> None:
    """Refuse a bot directory that is a symlink or that resolves outside ``auth_root``."""
    bot_dir = Path(bot_dir)
    if bot_dir.is_symlink():
        raise FatalBotError("bad-bot-dir", f"{bot_dir} is a symlink (to {os.readlink(bot_dir)}); "
                            "a bot directory must be a real directory", file=str(bot_dir))
    if auth_root is not None and os.path.lexists(bot_dir):
        root = Path(auth_root).resolve()
        if not bot_dir.resolve().is_relative_to(root):
            raise FatalBotError("bad-bot-dir", f"{bot_dir} resolves to {bot_dir.resolve()}, outside the auth "
                                f"root {root}", file=str(bot_dir))


def prepare_bot_dir(bot_dir: Path, auth_root: Path | None = None) -> None:
    """Create ``bot_dir`` (and parents) 0700 whatever the umask; refuse a symlink.

    Also tightens what is already inside (files 0600, directories 0700): sessions copied in by
    hand or created by an older version under a looser umask are private from here on.
    """
    bot_dir = Path(bot_dir)
    check_bot_dir(bot_dir, auth_root)
    try:
        ensure_private_dir(bot_dir)
        check_bot_dir(bot_dir, auth_root)
        tighten(bot_dir)
    except OSError as exc:  # e.g. auth_dir made a file or unwritable since the service started
        raise FatalBotError("bad-bot-dir", f"cannot use the bot directory {bot_dir}: {exc.strerror or exc}"
                            f"{f' ({exc.filename})' if exc.filename else ''}", file=str(bot_dir)) from None


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` 0700, and each missing parent 0700 too (mkdir's parents follow the umask)."""
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not os.path.lexists(p)]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another worker
            pass
        else:
            os.chmod(directory, 0o700)
    os.chmod(path, 0o700)


def tighten(bot_dir: Path) -> None:
    """chmod 0600 every regular file and 0700 every directory under ``bot_dir`` (no symlink followed)."""
    for root, dirs, files in os.walk(bot_dir, followlinks=False):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
        for name in files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 != 0o600:
                os.chmod(path, 0o600)


def follow_owner(path: Path, directory: Path) -> None:
    """Give ``path`` the owner of ``directory`` (when root made it inside a bot's own directory)."""
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if (st.st_uid, st.st_gid) != (0, 0):
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def resolve_identity(user: str | None, group: str | None) -> tuple[int, int] | None:
    """(uid, gid) for a bot's ``user``/``group`` (group defaults to the user's); None when neither is set."""
    if user is None and group is None:
        return None
    try:
        entry = pwd.getpwnam(user) if user is not None else None
    except KeyError:
        raise FatalBotError("bad-user", f"no such user {user!r} (bots[].user)") from None
    uid = entry.pw_uid if entry else os.geteuid()
    gid = entry.pw_gid if entry else os.getegid()
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise FatalBotError("bad-group", f"no such group {group!r} (bots[].group)") from None
    return uid, gid


def chown_bot_dir(bot_dir: Path, uid: int, gid: int) -> None:
    """Create the bot directory private and hand it (and everything in it) to uid:gid."""
    bot_dir = Path(bot_dir)
    check_bot_dir(bot_dir)
    ensure_private_dir(bot_dir)
    for parent in (bot_dir.parent, bot_dir.parent.parent):  # auth/<server>, auth: traversable, not listable
        os.chmod(parent, stat.S_IMODE(os.stat(parent).st_mode) | 0o111)
    os.chown(bot_dir, uid, gid)
    for root, dirs, files in os.walk(bot_dir, followlinks=False):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def drop_privileges(uid: int, gid: int) -> None:
    """Become uid:gid for good (supplementary groups cleared). Only root can; others keep theirs."""
    if os.geteuid() != 0 or (uid, gid) == (0, 0):
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.geteuid() != uid or os.getegid() != gid:
        raise FatalBotError("bad-user", f"could not switch to uid {uid} gid {gid}")


def lock_bot_dir(bot_dir: Path, supervisor_pid: int = 0) -> int:
    """Take the exclusive lock on the bot's directory; FatalBotError if another process holds it.

    The lock lives as long as the returned descriptor (the worker process): the kernel drops it
    however the worker dies, so a crash never leaves a stale lock behind. The file records
    ``<worker pid> <supervisor pid>``: a holder whose supervisor is gone is a leftover worker of
    this fleet (stopped or hung when its supervisor died), ended here so the bot comes back.
    """
    path = Path(bot_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        record = os.pread(fd, 64, 0).decode(errors="replace").split()
        if not _end_leftover(fd, record, supervisor_pid):
            os.close(fd)
            holder = record[0] if record else "another process"
            raise FatalBotError("dir-locked", f"{bot_dir} is in use by pid {holder}: another worker runs this bot",
                                file=str(path)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {supervisor_pid}".encode(), 0)
    return fd


#: how long a leftover worker may take to die and drop the lock once SIGKILLed
LEFTOVER_WAIT_S = 5.0


def _end_leftover(fd: int, record: list[str], supervisor_pid: int) -> bool:
    """SIGKILL the lock's holder if it is a worker whose supervisor has died; True once the lock is ours."""
    import logging
    import signal
    import time

    import psutil

    if len(record) < 2 or not all(r.isdigit() for r in record[:2]):
        return False  # an older or standalone worker: nothing says it is an orphan
    holder_pid, its_supervisor = int(record[0]), int(record[1])
    if its_supervisor in (0, supervisor_pid):
        return False  # a standalone worker, or one of our own supervisor's: not a leftover
    try:
        holder = psutil.Process(holder_pid)
        born = holder.create_time()
    except psutil.Error:
        return False
    try:  # gone, or its pid reused by a process younger than the worker: dead either way
        supervisor_alive = psutil.Process(its_supervisor).create_time() <= born
    except psutil.NoSuchProcess:
        supervisor_alive = False
    except psutil.Error:
        supervisor_alive = True
    if supervisor_alive:
        return False
    logging.getLogger("botvisor.worker").warning(
        "the bot dir is held by pid %d, a leftover worker of supervisor %d (gone): ending it", holder_pid,
        its_supervisor)
    try:
        if os.getpgid(holder_pid) == holder_pid:
            os.killpg(holder_pid, signal.SIGKILL)  # and what it started
        os.kill(holder_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while time.monotonic() < deadline:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.02)
    return False
