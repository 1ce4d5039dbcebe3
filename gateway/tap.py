"""The gateway's tap: a SUB socket on the supervisor's tap endpoint, read by asyncio.

ZeroMQ reconnects by itself when the supervisor restarts; the supervisor's welcome message
(sent when our subscription reaches it) tells us it has us, so ``on_welcome`` runs once per
(re)connection: the ingest uses it to catch up from the bots' histories.

In a ``[cluster]`` the gateway reads every shard's tap, one reader (one socket) per shard, so
each message and each welcome is known to come from its shard (``shard``; None on one host).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from protocol import ProtocolError, decode
from protocol.curve import client_keys, secure_client
from protocol.messages import Message
from protocol.topics import WELCOME, rejoin_quickly

log = logging.getLogger("botvisor.gateway.tap")

#: messages read before the reader lets the other tasks run
YIELD_EVERY = 32


class TapReader:
    def __init__(self, config: Any, on_message: Callable[[Message, int | None], Awaitable[None]],
                 on_welcome: Callable[[int | None], Awaitable[None]], endpoint: str | None = None,
                 shard: int | None = None, context: zmq.asyncio.Context | None = None) -> None:
        self.config = config
        self.on_message = on_message
        self.on_welcome = on_welcome
        self.endpoint = endpoint or config.endpoint("tap")
        self.shard = shard
        self._own_context = context is None
        self.context = context or zmq.asyncio.Context()
        self.welcomed = asyncio.Event()
        self.rejected = 0
        self.received = 0
        self._task: asyncio.Task[None] | None = None
        self._socket: zmq.asyncio.Socket | None = None

    def _connect(self) -> zmq.asyncio.Socket:
        sock = self.context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1_000_000)
        rejoin_quickly(sock)  # a restarted supervisor's first messages reach the webhooks too
        if self.endpoint.startswith("tcp://"):
            secure_client(sock, client_keys(self.config, self.endpoint))
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.endpoint)
        return sock

    def start(self) -> None:
        self._socket = self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tap {self.endpoint}")

    async def _run(self) -> None:
        assert self._socket is not None
        sock = self._socket
        streak = 0
        while True:
            frames = await sock.recv_multipart()
            streak += 1
            if streak >= YIELD_EVERY:
                # a receive that is ready completes without yielding: with a backlog on the tap
                # this loop would starve every other task (lanes, HTTP) until the backlog is gone
                streak = 0
                await asyncio.sleep(0)
            if frames == [WELCOME]:
                # a new supervisor (or the first): it has our subscription from now on
                self.welcomed.set()
                try:
                    await self.on_welcome(self.shard)
                except Exception:
                    log.exception("catching up after the tap's welcome failed")
                continue
            if len(frames) != 2:
                self.rejected += 1
                continue
            try:
                message = decode(frames[1])
            except ProtocolError as exc:
                self.rejected += 1
                log.warning("unreadable message on the tap: %s", exc)
                continue
            self.received += 1
            try:
                await self.on_message(message, self.shard)
            except Exception:  # one bad message must not stop the feed
                log.exception("handling %s from %s failed", type(message).__name__, message.bot)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._socket is not None:
            self._socket.close(0)
        if self._own_context:
            self.context.term()
