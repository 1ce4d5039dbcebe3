"""The gateway process's parts, wired once: what the routers reach as ``app.state.gateway``.

tap -> ingest (per bot, gap-filled) -> hub -> {outbox sink -> dispatcher, stream clients, pages}.
``reload`` re-reads the config file (on the supervisor's "reloaded" notice, on SIGHUP, or from
the API) and re-applies the webhooks without touching queued deliveries.

In a ``[cluster]`` (docs/cluster.md, "The gateway"): one tap reader per shard, control calls
routed to each bot's shard (bridge.py), and the webhooks fed from the gateway's own shard only
(``[gateway] webhooks_from = "shard"``, the default: one gateway per pod, each event delivered
once fleet-wide) or from every shard (``"fleet"``: one gateway for the whole fleet).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import zmq.asyncio

from protocol.cluster_config import ShardUnknown, resolve_shard
from protocol.config import Config, ConfigError, load_config
from protocol.fleet import endpoints

from .bridge import ControlBridge
from .envelope import DELIVERED_KINDS, webhook_envelope
from .hub import EventHub
from .ingest import Ingest
from .keys import KeyStore, default_keys_path
from .metrics import GatewayMetrics
from .tap import TapReader
from .webhooks.dispatcher import Dispatcher
from .webhooks.outbox import Outbox
from .webhooks.store import FILE

log = logging.getLogger("botvisor.gateway")


def data_dir(config: Config) -> Path:
    return config.path.resolve().parent / config.gateway.data_dir


def keys_path(config: Config) -> Path:
    if config.gateway.keys_file:
        return config.path.resolve().parent / config.gateway.keys_file
    return default_keys_path(config.path.resolve())


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = config.supervisor.server_name
        self.keys = KeyStore(keys_path(config))
        self.metrics = GatewayMetrics()
        self.hub = EventHub()
        self.started = False
        #: in a [cluster] with webhooks_from = "shard": the shard whose events go to the webhooks
        self.shard = own_shard(config)
        #: called once started (main.py installs its SIGHUP handler there)
        self.on_started: Any = None
        # the rest needs a running loop: start()

    async def start(self) -> None:
        config = self.config
        self.bridge = ControlBridge(config, timeout=config.gateway.command_timeout)
        self.outbox = Outbox(data_dir(config) / FILE, config.gateway.outbox_limit, config.gateway.outbox_sync)
        cursors = await self.outbox.read(self.outbox.reader.cursors)
        self.ingest = Ingest(self.server, self.hub, self.bridge, self.metrics, cursors)
        self.ingest.on_reload = self.reload
        self.dispatcher = Dispatcher(self.outbox, self.metrics, self.ingest.publish_gateway, config.path.resolve().parent)
        await self.dispatcher.apply(config.gateway.webhooks)
        self.hub.add_sink(self._store)
        self.dispatcher.start()
        self.context = zmq.asyncio.Context()
        self.taps = [TapReader(config, self.ingest.on_messages, self.ingest.on_welcome, endpoint, shard, self.context)
                     for shard, endpoint in endpoints(config, "tap")]
        for tap in self.taps:
            tap.start()
        self.started = True
        if config.cluster is not None and not (config.cluster.peer_control and config.cluster.peer_tap):
            log.warning("[cluster] without peer_control and peer_tap: this gateway sees only %s",
                        "its own supervisor's bots" if not config.cluster.peer_tap else "its own supervisor's status")
        if self.on_started is not None:
            self.on_started(self)
        log.info("gateway for %s: %d webhook endpoint(s), data in %s%s", self.server,
                 len(config.gateway.webhooks), data_dir(config),
                 "" if len(self.taps) == 1 else f"; {len(self.taps)} shards, webhooks from "
                 + ("every shard" if self.shard is None else f"shard {self.shard}"))

    async def _store(self, body: dict[str, Any]) -> None:
        """The hub's sink: store what webhooks want, and the bot's cursor, before anyone sees it."""
        kind = body.get("kind")
        if kind not in DELIVERED_KINDS and kind != "gateway":
            return
        if self.shard is not None and body.get("shard", self.shard) != self.shard:
            return  # another shard's event: that shard's own gateway delivers it
        cursor = body.pop("_cursor", None)
        envelope = webhook_envelope(body)
        endpoints = self.dispatcher.routes(body["bot"], envelope["type"])
        if endpoints or cursor is not None:
            await self.outbox.write(envelope, endpoints, cursor)

    async def reload(self) -> str:
        """Re-read the file and apply its [gateway] webhooks; the rest needs a restart."""
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            log.error("gateway reload refused: %s", exc)
            raise
        await self.dispatcher.apply(new.gateway.webhooks)
        self.config = new
        self.bridge.config = new
        message = f"gateway reloaded {new.path}: {len(new.gateway.webhooks)} webhook endpoint(s)"
        log.info(message)
        return message

    def ready(self) -> dict[str, bool]:
        """What /readyz checks. In a [cluster]: the tap of the gateway's own shard (a gateway for the
        whole fleet: any shard's), never every shard's: one shard down must not take every pod's
        API out of its Service. Which shards answer is in /v1/status (``shards``)."""
        taps = self.tap_states()
        if self.shard is not None:
            tap = taps.get(self.shard, False)
        else:
            tap = any(taps.values())
        return {"tap": self.started and tap, "outbox": self.started}

    def tap_states(self) -> dict[int | None, bool]:
        """Per shard (None: the one supervisor): whether its tap has welcomed us."""
        return {tap.shard: tap.welcomed.is_set() for tap in getattr(self, "taps", [])}

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        for tap in self.taps:
            await tap.stop()
        await self.ingest.stop()
        await self.outbox.drain()
        await self.dispatcher.stop()
        self.outbox.close()
        self.bridge.close()
        self.context.term()


def own_shard(config: Config) -> int | None:
    """The shard whose events this gateway delivers (None: every shard's, or one host)."""
    if config.cluster is None or config.gateway.webhooks_from == "fleet" or len(endpoints(config, "tap")) == 1:
        return None
    try:
        return resolve_shard(config.cluster)
    except ShardUnknown as exc:
        raise ConfigError(config.path, "gateway.webhooks_from",
                          f'"shard" needs the gateway\'s own shard: {exc} (or set webhooks_from = "fleet" '
                          'for one gateway over every shard)') from None
