"""BotManager: the fleet's containers, as the original design's BotManager exposes them."""

from __future__ import annotations

from typing import Iterator

from protocol.config import BotConfig

from .container import BotContainer, ContainerEvent, ContainerStatus, Runtime


class UnknownBot(KeyError):
    def __str__(self) -> str:
        return f"no bot {self.args[0]!r} is configured"


class BotManager:
    def __init__(self, runtime: Runtime, server_name: str) -> None:
        self.runtime = runtime
        self.server_name = server_name
        self._containers: dict[str, BotContainer] = {}

    def create_bot_container(self, bot_id: str, bot_instance: BotConfig) -> BotContainer:
        """Create (not start) the container for ``bot_instance``; ids are unique."""
        if bot_id != bot_instance.id:
            raise ValueError(f"bot id {bot_id!r} does not match its config entry {bot_instance.id!r}")
        if bot_id in self._containers:
            raise ValueError(f"a container for bot {bot_id!r} exists already")
        container = BotContainer(bot_instance, self.runtime, self.server_name)
        self._containers[bot_id] = container
        return container

    def remove_bot_container(self, bot_id: str) -> BotContainer:
        return self._containers.pop(bot_id)

    def get_bot_container(self, bot_id: str) -> BotContainer:
        try:
            return self._containers[bot_id]
        except KeyError:
            raise UnknownBot(bot_id) from None

    def find(self, bot_id: str) -> BotContainer | None:
        return self._containers.get(bot_id)

    def get_all_bot_containers(self) -> dict[str, BotContainer]:
        return dict(self._containers)

    def get_container_health_status(self) -> dict[str, ContainerStatus]:
        return {bot_id: c.get_status() for bot_id, c in self._containers.items()}

    def get_container_event_history(self, bot_id: str, limit: int | None = None) -> list[ContainerEvent]:
        return self.get_bot_container(bot_id).get_event_history(limit)

    def __iter__(self) -> Iterator[BotContainer]:
        return iter(list(self._containers.values()))

    def __len__(self) -> int:
        return len(self._containers)
