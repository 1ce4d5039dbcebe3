"""What a reload changes: a pure comparison of the running configuration with the new one."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import BotConfig, Config

#: settings that only a restart of botvisor can change
FIXED_SETTINGS = ("server_name", "auth_dir", "run_dir")


@dataclass(frozen=True)
class ReloadPlan:
    added: list[BotConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[BotConfig] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: why the new file cannot be applied live (None: it can)
    refused: str | None = None

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed, "
                f"{len(self.unchanged)} untouched")


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    fixed = [name for name in FIXED_SETTINGS if getattr(new.supervisor, name) != getattr(old.supervisor, name)]
    if new.endpoints != old.endpoints:
        fixed.append("endpoints")
    if new.metrics != old.metrics:
        fixed.append("metrics")
    if fixed:
        return ReloadPlan(refused=f"{', '.join(fixed)} can only change with a restart of botvisor")
    old_bots = {bot.id: bot for bot in old.bots}
    new_bots = {bot.id: bot for bot in new.bots}
    return ReloadPlan(
        added=[bot for bot_id, bot in new_bots.items() if bot_id not in old_bots],
        removed=[bot_id for bot_id in old_bots if bot_id not in new_bots],
        # any difference that reaches the worker, inherited settings included
        changed=[bot for bot_id, bot in new_bots.items() if bot_id in old_bots and bot != old_bots[bot_id]],
        unchanged=[bot_id for bot_id, bot in new_bots.items() if old_bots.get(bot_id) == bot],
    )
