"""``botvisor gateway -c FILE``: the gateway process (uvicorn serving create_app).

uvicorn handles SIGTERM and SIGINT (a graceful stop); SIGHUP re-reads the config's webhooks,
as the supervisor's own "reloaded" notice does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import uvicorn

from protocol.config import Config, split_listen

from .app import create_app
from .dashboard import mount as mount_dashboard
from .runtime import Gateway

log = logging.getLogger("botvisor.gateway")
#: uvloop's event loop (libuv): each delivery's HTTP exchange and each tap read cost the loop
#: about half as much CPU as on asyncio's own (bench/webhooks.py)
LOOP = "uvloop"


def serve(config: Config, log_level: str = "info") -> int:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gateway = Gateway(config)
    gateway.on_started = _install_sighup
    app = create_app(gateway)
    mount_dashboard(app)  # the operators' pages under /ui/ (docs/dashboard.md)

    host, port = split_listen(config.gateway.listen)
    # access_log off: uvicorn's access lines carry the query string, where a WebSocket key may be
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                           lifespan="on", ws="websockets-sansio", proxy_headers=False, loop=LOOP))
    app.state.server = server  # the dashboard's live streams end when it is stopping
    server.run()
    return 0 if server.started else 1


def _install_sighup(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(gateway)))


async def _reload(gateway: Gateway) -> Any:
    try:
        await gateway.reload()
    except Exception as exc:  # a bad file leaves the running webhooks as they were
        log.error("reload on SIGHUP refused: %s", exc)
