"""The gateway process's parts, wired once: what the routers reach as ``app.state.gateway``.

tap -> ingest (per bot, gap-filled) -> hub -> {outbox sink -> dispatcher, stream clients, pages}.
``reload`` re-reads the config file (on the supervisor's "reloaded" notice, on SIGHUP, or from
the API) and re-applies the webhooks without touching queued deliveries.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from protocol.config import Config, ConfigError, load_config

from .bridge import ControlBridge
from .envelope import DELIVERED_KINDS, webhook_envelope
from .hub import EventHub
from .ingest import Ingest
from .keys import KeyStore, default_keys_path
from .metrics import GatewayMetrics
from .tap import TapReader
from .webhooks.dispatcher import Dispatcher
from .webhooks.outbox import FILE, Outbox

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
        #: called once started (main.py installs its SIGHUP handler there)
        self.on_started: Any = None
        # the rest needs a running loop: start()

    async def start(self) -> None:
        config = self.config
        self.bridge = ControlBridge(config, timeout=config.gateway.command_timeout)
        self.outbox = Outbox(data_dir(config) / FILE, config.gateway.outbox_limit)
        cursors = await self.outbox.read(self.outbox.reader.cursors)
        self.ingest = Ingest(self.server, self.hub, self.bridge, self.metrics, cursors)
        self.ingest.on_reload = self.reload
        self.dispatcher = Dispatcher(self.outbox, self.metrics, self.ingest.publish_gateway, config.path.resolve().parent)
        await self.dispatcher.apply(config.gateway.webhooks)
        self.hub.add_sink(self._store)
        self.dispatcher.start()
        self.tap = TapReader(config, self.ingest.on_messages, self.ingest.on_welcome)
        self.tap.start()
        self.started = True
        if self.on_started is not None:
            self.on_started(self)
        log.info("gateway for %s: %d webhook endpoint(s), data in %s", self.server,
                 len(config.gateway.webhooks), data_dir(config))

    async def _store(self, body: dict[str, Any]) -> None:
        """The hub's sink: store what webhooks want, and the bot's cursor, before anyone sees it."""
        kind = body.get("kind")
        if kind not in DELIVERED_KINDS and kind != "gateway":
            return
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
        return {"tap": self.started and self.tap.welcomed.is_set(), "outbox": self.started}

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.tap.stop()
        await self.ingest.stop()
        await self.outbox.drain()
        await self.dispatcher.stop()
        self.outbox.close()
        self.bridge.close()
