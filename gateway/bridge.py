"""The control socket, from asyncio: each call runs a blocking ControlClient in a thread.

A small pool of clients per endpoint (a zmq socket is used by one thread at a time) on a pool
of threads, so a slow ``send`` to one bot never holds up ``status`` for another.

In a ``[cluster]`` every request is routed (docs/cluster.md, "The gateway"): a request about a
bot (``bot`` or ``bots`` in its arguments) goes to the control endpoint of the shard that runs
it (protocol/fleet.py ``owner``: its pin, else the hashing); ``status`` of the whole fleet asks
every shard at once and merges them (protocol/fleet.py ``fleet_status``), with each bot's
``shard`` and a ``shards`` list saying which shard did not answer. Without ``[cluster]`` every
call goes to the one supervisor, as before.
"""

from __future__ import annotations

import asyncio
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from protocol.client import ControlClient, NotRunning
from protocol.curve import client_keys
from protocol.fleet import endpoints, fleet_status, owner

#: control calls in flight at once
POOL = 8
#: seconds the fleet's status waits for each shard: a shard that is down delays a fleet view by this
FLEET_TIMEOUT = 2.0
#: a shard that did not answer in FLEET_TIMEOUT is then asked with DOWN_TIMEOUT, and with the
#: full timeout again once every DOWN_RECHECK seconds: a shard down costs every fleet view (the
#: dashboard's, each few seconds) a quarter of a second, not two, and one slow but alive is
#: still found within DOWN_RECHECK
DOWN_TIMEOUT = 0.25
DOWN_RECHECK = 10.0


class ControlBridge:
    def __init__(self, config: Any, timeout: float, size: int = POOL) -> None:
        self.config = config
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="control")
        self._clients: dict[str, queue.SimpleQueue[ControlClient]] = {}
        self._size = size
        self._made = 0
        #: shard endpoint -> when it last failed to answer a full-timeout ask (``clock``)
        self._down: dict[str, float] = {}
        self.clock = time.monotonic

    @property
    def clustered(self) -> bool:
        return self.config.cluster is not None and bool(self.config.cluster.peer_control)

    def _client(self, endpoint: str) -> ControlClient:
        pool = self._clients.setdefault(endpoint, queue.SimpleQueue())
        try:
            return pool.get_nowait()
        except queue.Empty:
            self._made += 1
            if endpoint == self.config.endpoint("control"):
                return ControlClient.for_config(self.config, timeout=self.timeout)
            return ControlClient(endpoint, timeout=self.timeout, curve=client_keys(self.config, endpoint))

    def _call_at(self, endpoint: str, command: str, args: dict[str, Any], timeout: float | None) -> Any:
        client = self._client(endpoint)
        try:
            return client.call(command, args, timeout=timeout)
        finally:
            self._clients[endpoint].put(client)

    def _call(self, command: str, args: dict[str, Any], timeout: float | None) -> Any:
        if not self.clustered:
            return self._call_at(self.config.endpoint("control"), command, args, timeout)
        if "bot" in args and isinstance(args["bot"], str):
            return self._on_shard(args["bot"], command, args, timeout)
        bots = args.get("bots")
        if isinstance(bots, list) and bots and all(isinstance(b, str) for b in bots):
            return self._per_shard(command, args, bots, timeout)
        if command == "status":
            return fleet_status(self.config, min(FLEET_TIMEOUT, self.timeout if timeout is None else timeout),
                                ask=self._ask_shard)
        raise ValueError(f"{command!r} names no bot: in a [cluster] the gateway cannot tell which shard to ask")

    def _ask_shard(self, endpoint: str, timeout: float, command: str, args: dict[str, Any]) -> Any:
        """One shard's part of a fleet-wide call, with a short timeout while it is known down."""
        failed_at = self._down.get(endpoint)
        full = failed_at is None or self.clock() - failed_at >= DOWN_RECHECK
        try:
            result = self._call_at(endpoint, command, args, timeout if full else min(timeout, DOWN_TIMEOUT))
        except Exception:
            if full:
                self._down[endpoint] = self.clock()
            raise
        self._down.pop(endpoint, None)
        return result

    def _on_shard(self, bot: str, command: str, args: dict[str, Any], timeout: float | None) -> Any:
        k, endpoint = owner(self.config, bot)
        try:
            result = self._call_at(endpoint, command, args, timeout)
        except NotRunning as exc:  # name the shard, so the 503 says which one is down
            raise type(exc)(f"shard {k}, which runs {bot!r}, does not answer: {exc}", exc.code) from None
        if command == "status" and isinstance(result, dict):
            for entry in result.get("bots", []):
                entry.setdefault("shard", k)
        return result

    def _per_shard(self, command: str, args: dict[str, Any], bots: list[str], timeout: float | None) -> Any:
        """A command over a list of bots: each shard gets its own bots, the answers merged."""
        groups: dict[str, list[str]] = {}
        for bot in bots:
            groups.setdefault(owner(self.config, bot)[1], []).append(bot)
        if len(groups) == 1:
            return self._on_shard(bots[0], command, args, timeout)
        answers = [self._on_shard(group[0], command, {**args, "bots": group}, timeout) for group in groups.values()]
        if command == "status":
            return {**answers[0], "pid": None, "bots": [b for a in answers for b in a.get("bots", [])]}
        merged: dict[str, Any] = {}
        for answer in answers:
            merged.update(answer)
        return merged

    async def call(self, command: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """The command's result, or ControlError (NotRunning when no supervisor answers)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, command, dict(args or {}), timeout)

    async def call_shard(self, shard: int | None, command: str, args: dict[str, Any] | None = None,
                         timeout: float | None = None) -> Any:
        """A command for one shard's supervisor itself (``status`` after its tap's welcome)."""
        endpoint = dict(endpoints(self.config, "control")).get(shard, self.config.endpoint("control"))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call_at, endpoint, command, dict(args or {}), timeout)

    async def call_for(self, bot: str, command: str, args: dict[str, Any] | None = None,
                       timeout: float | None = None) -> Any:
        """``command`` on the supervisor that runs ``bot`` (its shard's; one host: the one), as it is."""
        loop = asyncio.get_running_loop()
        if not self.clustered:
            return await self.call(command, args, timeout)
        return await loop.run_in_executor(self._executor, self._on_shard, bot, command, dict(args or {}), timeout)

    async def bot_call(self, bot: str, command: str, args: dict[str, Any] | None = None,
                       worker_timeout: float | None = None) -> Any:
        """A worker operation on ``bot`` (the supervisor forwards it), as BotHandle.call does."""
        wait = worker_timeout or float(self.config.supervisor.command_timeout)
        return await self.call(command, {**(args or {}), "bot": bot, "timeout": wait}, timeout=wait + self.timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for pool in self._clients.values():
            while True:
                try:
                    pool.get_nowait().close()
                except queue.Empty:
                    break
