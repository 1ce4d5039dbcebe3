"""Does each configured app import? Asked of a throw-away process per app, never of the supervisor.

`botvisor check-config` reports the answers, `botvisor run` refuses a config with a broken app
(exit 78, nothing started), and a reload that brings one is refused with a notice, the running
fleet kept. The processes run in parallel, one per distinct (app, directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from protocol.config import BotConfig, Config

#: seconds an app may take to import before it counts as broken
IMPORT_TIMEOUT = 30.0
_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class AppCheck:
    ok: bool
    reason: str = ""
    file: str | None = None
    line: int | None = None
    #: directories holding the app's code (what --watch watches)
    watch: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        return where + self.reason


def check_apps(bots: Iterable[BotConfig], timeout: float = IMPORT_TIMEOUT) -> dict[str, AppCheck]:
    """bot id -> the outcome of importing its app (bots without an app are left out)."""
    wanted = [bot for bot in bots if bot.app]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
    running: dict[tuple[str, str, str | None, str | None], subprocess.Popen[str]] = {}
    failed: dict[tuple[str, str, str | None, str | None], AppCheck] = {}
    for bot in wanted:
        key = _key(bot)
        if key not in running and key not in failed:
            # as the bot's own user when it has one (the worker imports it as that user too)
            user, group = key[2:]
            try:
                running[key] = subprocess.Popen([sys.executable, "-m", "worker.app.check", key[0], key[1]],
                                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True, env=env, cwd=key[1], user=user,
                                                group=group)
            except (OSError, KeyError, ValueError) as exc:  # no such user/group, a missing directory
                failed[key] = AppCheck(False, f"cannot run the import check (as user {user}): {exc}")
    outcomes: dict[tuple[str, str, str | None, str | None], AppCheck] = dict(failed)
    deadline = time.monotonic() + timeout
    for key, proc in running.items():
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            outcomes[key] = AppCheck(False, f"importing it took over {timeout:g} s")
            continue
        outcomes[key] = _parse(out, err, proc.returncode)
    return {bot.id: outcomes[_key(bot)] for bot in wanted}


def _key(bot: BotConfig) -> tuple[str, str, str | None, str | None]:
    as_root = os.geteuid() == 0
    return (bot.app or "", bot.app_root or ".", bot.user if as_root else None, bot.group if as_root else None)


def _parse(out: str, err: str, code: int) -> AppCheck:
    for line in reversed(out.splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict) and "ok" in answer:
            return AppCheck(bool(answer["ok"]), answer.get("reason") or "", answer.get("file"), answer.get("line"),
                            tuple(answer.get("watch") or ()))
    tail = err.strip().splitlines()[-1:] or [f"exit {code}"]
    return AppCheck(False, f"importing it ended the checking process: {tail[0]}")


def broken_apps(bots: Iterable[BotConfig]) -> list[str]:
    """One line per bot whose app cannot be loaded: ``bot: file:line: reason``."""
    return [f"bot {bot_id}: app cannot be loaded: {check.describe()}"
            for bot_id, check in check_apps(bots).items() if not check.ok]


def changed_apps(old: Config, new: Config) -> list[BotConfig]:
    """New bots with an app, and bots whose app setting changed: what a reload must check."""
    before = {bot.id: bot for bot in old.bots}
    return [bot for bot in new.bots if bot.app and (bot.id not in before
                                                    or (before[bot.id].app, before[bot.id].app_root)
                                                    != (bot.app, bot.app_root))]
