"""Inspect, back up, restore and import the bots' credentials (auth/<server>/bot_<id>/).

  creds stats                      per server: bots, paired, verified, expired, size, newest backup
  creds list BOT                   the bot's backups, newest first
  creds backup BOT... | --all      back up now (safe while the worker runs: SQLite online backup)
  creds restore BOT [BACKUP]       put a backup (default: the newest good one) in place; refused
                                   while the bot's worker runs unless --stop (stops it first)
  creds migrate --from DIR         import neonize/whatsmeow <id>.sqlite3|<id>.db files and old
                                   bot_<id>/ folders; a dry run unless --apply; never overwrites
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from protocol.client import ControlClient, ControlError, NotRunning
from worker.credentials import CredentialsError, CredentialsManager
from worker.errors import WorkerExit

from .common import add_config_argument, fail, load_or_exit
from .creds_migrate import migrate

EXIT_REFUSED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    stats = sub.add_parser("stats", help="per-server statistics")
    stats.add_argument("--json", action="store_true")
    listing = sub.add_parser("list", help="a bot's backups")
    listing.add_argument("bot")
    backup = sub.add_parser("backup", help="back up bots now")
    backup.add_argument("bots", nargs="*", metavar="BOT")
    backup.add_argument("--all", action="store_true", help="every bot directory of this server")
    restore = sub.add_parser("restore", help="restore a backup")
    restore.add_argument("bot")
    restore.add_argument("backup", nargs="?", help="a stamp or file name from `creds list` (default: newest good)")
    restore.add_argument("--stop", action="store_true", help="stop the bot's worker first if it runs")
    restore.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the worker to stop")
    mig = sub.add_parser("migrate", help="import existing sessions")
    mig.add_argument("--from", dest="source", required=True, metavar="DIR")
    mig.add_argument("--apply", action="store_true", help="do it (default: only say what would happen)")


def execute(args: argparse.Namespace) -> int:
    config = load_or_exit(args)
    manager = CredentialsManager(config.auth_root, config.supervisor.server_name)
    bots = {b.id: b for b in config.bots}
    try:
        if args.action == "stats":
            return _stats(manager, args.json)
        if args.action in ("list", "restore") and (unknown := _unknown_bot(manager, bots, args.bot)):
            return fail(unknown)
        if args.action == "list":
            return _list(manager, bots.get(args.bot, args.bot))
        if args.action == "backup":
            return _backup(manager, bots, args)
        if args.action == "restore":
            return _restore(manager, config, bots.get(args.bot, args.bot), args)
        return _migrate(manager, args)
    except (CredentialsError, ValueError, WorkerExit, OSError) as exc:
        return fail(str(exc))


def _unknown_bot(manager: CredentialsManager, bots: dict[str, Any], bot_id: str) -> str | None:
    """Why ``bot_id`` names no bot: neither configured nor with a directory under auth_dir; else None."""
    if bot_id in bots:
        return None
    try:
        directory = manager.bot_dir(bot_id)
    except ValueError as exc:
        return str(exc)
    if directory.is_dir():
        return None  # removed from the config, its credentials still there
    known = ", ".join(sorted(bots)) or "none"
    return f"no bot {bot_id!r}: not in the config (bots: {known}) and no {directory}"


def _stats(manager: CredentialsManager, as_json: bool) -> int:
    root = manager.auth_root
    servers = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    rows = [manager.get_credential_stats(s) for s in servers]
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'SERVER':<16} {'BOTS':>5} {'PAIRED':>7} {'VERIFIED':>9} {'EXPIRED':>8} {'SIZE':>10} {'BACKUPS':>8}  NEWEST BACKUP")
    for r in rows:
        print(f"{r['server']:<16} {r['bots']:>5} {r['paired']:>7} {r['verified']:>9} {r['expired']:>8} "
              f"{_size(r['total_bytes']):>10} {r['backups']:>8}  {r['newest_backup'] or '-'}")
    if not rows:
        print(f"(no credentials under {root})")
    return 0


def _list(manager: CredentialsManager, bot: Any) -> int:
    backups = manager.list_backups(bot)
    if not backups:
        print(f"{manager.bot_dir(bot)}: no backups")
        return 0
    for b in backups:
        size = sum(p.stat().st_size for p in b.files)
        print(f"{b.stamp}  {b.created.isoformat(timespec='seconds')}  {_size(size):>9}  "
              f"{' '.join(p.name for p in b.files)}")
    return 0


def _backup(manager: CredentialsManager, bots: dict[str, Any], args: argparse.Namespace) -> int:
    if args.all == bool(args.bots):
        return fail("give bot ids or --all (not both)", 2)
    targets = [d.name[4:] for d in manager.get_all_bot_dirs()] if args.all else args.bots
    for bot_id in targets:
        backup = manager.backup_credentials(bots.get(bot_id, bot_id))
        print(f"{bot_id}: " + (f"backup {backup.stamp} ({', '.join(p.name for p in backup.files)})"
                               if backup else "nothing to back up"))
    return 0


def _restore(manager: CredentialsManager, config: Any, bot: Any, args: argparse.Namespace) -> int:
    from worker.botdir import LOCK_FILE, follow_owner, lock_bot_dir
    from worker.recovery import choose_backup, restore_backup

    bot_id = manager.bot_id(bot)
    directory = manager.bot_dir(bot)
    if not directory.is_dir():
        return fail(f"{directory} does not exist")
    choose_backup(manager, bot, args.backup)  # a bad stamp is refused before the bot is touched
    state = _worker_state(config, bot_id)
    if state is not None and state not in ("stopped", "failed"):
        if not args.stop:
            return fail(f"{bot_id}'s worker is {state}: restoring under it would corrupt its session; "
                        f"stop it first (botvisor stop {bot_id}) or add --stop", EXIT_REFUSED)
        with ControlClient(config.endpoint("control")) as client:
            client.call("stop", {"bots": [bot_id]})
        deadline = time.monotonic() + args.timeout
        while _worker_state(config, bot_id) not in ("stopped", "failed", None):
            if time.monotonic() > deadline:
                return fail(f"{bot_id}'s worker did not stop within {args.timeout:g} s")
            time.sleep(0.1)
    fd = lock_bot_dir(directory)  # proof that no worker (a stray one included) uses the store
    follow_owner(directory / LOCK_FILE, directory)  # root made it? the bot's own user must open it later
    try:
        chosen = restore_backup(manager, bot, args.backup)
    finally:
        os.close(fd)
    print(f"{bot_id}: restored backup {chosen.stamp} ({', '.join(p.name for p in chosen.files)})")
    if state is not None and args.stop:
        print(f"start it again with: botvisor start {bot_id}")
    return 0


def _worker_state(config: Any, bot_id: str) -> str | None:
    """The bot's container state per the supervisor; None when no supervisor runs or knows it."""
    try:
        with ControlClient(config.endpoint("control"), timeout=3.0) as client:
            result = client.call("status", {"bots": [bot_id]})
    except NotRunning:
        return None
    except ControlError as exc:
        if "no such bot" in str(exc):
            return None
        raise
    return result["bots"][0]["container_state"]


def _migrate(manager: CredentialsManager, args: argparse.Namespace) -> int:
    items = migrate(manager, args.source, apply=args.apply)
    for item in items:
        print(f"{item.source}: {item.fate}")
    imported = sum(item.ok for item in items)
    verb = "imported" if args.apply else "would import"
    print(f"{verb} {imported} of {len(items)}" + ("" if args.apply else " (dry run: add --apply)"))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
