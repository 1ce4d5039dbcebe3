"""The control socket, from asyncio: each call runs a blocking ControlClient in a thread.

A small pool of clients (a zmq socket is used by one thread at a time) on a pool of threads
of the same size, so a slow ``send`` to one bot never holds up ``status`` for another.
"""

from __future__ import annotations

import asyncio
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from protocol.client import ControlClient

#: control calls in flight at once
POOL = 8


class ControlBridge:
    def __init__(self, config: Any, timeout: float, size: int = POOL) -> None:
        self.config = config
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="control")
        self._clients: queue.SimpleQueue[ControlClient] = queue.SimpleQueue()
        self._size = size
        self._made = 0

    def _client(self) -> ControlClient:
        try:
            return self._clients.get_nowait()
        except queue.Empty:
            self._made += 1
            return ControlClient.for_config(self.config, timeout=self.timeout)

    def _call(self, command: str, args: dict[str, Any], timeout: float | None) -> Any:
        client = self._client()
        try:
            return client.call(command, args, timeout=timeout)
        finally:
            self._clients.put(client)

    async def call(self, command: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """The command's result, or ControlError (NotRunning when no supervisor answers)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, command, dict(args or {}), timeout)

    async def bot_call(self, bot: str, command: str, args: dict[str, Any] | None = None,
                       worker_timeout: float | None = None) -> Any:
        """A worker operation on ``bot`` (the supervisor forwards it), as BotHandle.call does."""
        wait = worker_timeout or float(self.config.supervisor.command_timeout)
        return await self.call(command, {**(args or {}), "bot": bot, "timeout": wait}, timeout=wait + self.timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        while True:
            try:
                self._clients.get_nowait().close()
            except queue.Empty:
                break
