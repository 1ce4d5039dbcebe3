"""What a reload changes (a pure comparison of the running configuration with the new one), and
carrying that out on the fleet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from protocol import ContainerState
from protocol.config import BotConfig, Config

if TYPE_CHECKING:
    from .container import BotContainer
    from .manager import BotManager

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


def apply_plan(manager: BotManager, plan: ReloadPlan, removing: set[str], forget: Callable[[str], Any]) -> None:
    """Carry a plan out on the fleet: stop what was removed, restart what changed, start what is new.

    A removed bot's container is kept until its worker has stopped (``removing`` holds its id),
    then dropped and ``forget(bot_id)`` called; re-adding it meanwhile keeps the container.
    """
    for bot_id in plan.removed:
        container = manager.get_bot_container(bot_id)
        container.stop("removed from the configuration")
        _forget_when_stopped(manager, container, removing, forget)
    for bot in plan.changed:
        container = manager.get_bot_container(bot.id)
        container.update_config(bot)
        if container.state in (ContainerState.INITIALIZING, ContainerState.RUNNING, ContainerState.STOPPING):
            container.restart("configuration changed")
    for bot in plan.added:
        found = manager.find(bot.id)
        if found is not None:  # removed by an earlier reload and still stopping: keep it
            removing.discard(bot.id)
            found.update_config(bot)
            container = found
        else:
            container = manager.create_bot_container(bot.id, bot)
        if bot.autostart:
            container.start()


def _forget_when_stopped(manager: BotManager, container: BotContainer, removing: set[str],
                         forget: Callable[[str], Any]) -> None:
    bot_id = container.bot.id
    removing.add(bot_id)

    def check(event: Any) -> None:
        if container.state is ContainerState.STOPPED and bot_id in removing:
            removing.discard(bot_id)
            manager.remove_bot_container(bot_id)
            forget(bot_id)

    if container.state is ContainerState.STOPPED:
        check(None)
    else:
        container.on("state", check)
