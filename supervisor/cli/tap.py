"""Watch a fleet's messages live: hello, heartbeat, event, bye, state and notice.

Filters: --bot (repeatable, glob patterns: 'shop-*'), --type (repeatable: a kind such as
heartbeat or state, or an event type such as message-upsert). --json prints one object per
line with the topic and every payload field. --count N exits 0 after N matching messages;
--timeout S gives up after S seconds and exits 1 unless it saw what it waited for. Several
--endpoint make one tap over many supervisors; a restarted supervisor is picked up again.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from typing import Any

import msgpack
import zmq

from protocol import Event, EventType, Kind, ProtocolError, decode
from protocol.client_config import load_client_config
from protocol.config import ConfigError, default_config_path
from protocol.messages import KIND_OF
from protocol.topics import bot_prefix, rejoin_quickly

from .common import add_config_argument, fail
from .render import describe_message, render_qr

KINDS = {k.value for k in Kind}
TYPES = {t.value for t in EventType}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--endpoint", action="append", default=[], metavar="EP",
                        help="a tap endpoint to connect to (repeatable; default: the config's)")
    parser.add_argument("--bot", action="append", default=[], metavar="GLOB", help="only these bots (repeatable)")
    parser.add_argument("--type", action="append", default=[], metavar="TYPE",
                        help=f"only these kinds or event types (repeatable): {', '.join(sorted(KINDS | TYPES))}")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="exit 0 after N matching messages")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="exit 1 if --count (or any) matching messages did not arrive within S seconds")
    parser.add_argument("--no-qr", action="store_true", help="do not draw QR codes in the terminal")
    parser.add_argument("--fleet", action="store_true",
                        help="[cluster]: every shard's tap ([cluster] peer_tap), each line with its bot's shard")


def execute(args: argparse.Namespace) -> int:
    unknown = [t for t in args.type if t not in KINDS | TYPES]
    if unknown:
        return fail(f"unknown --type {', '.join(unknown)} (known: {', '.join(sorted(KINDS | TYPES))})", 2)
    endpoints = list(args.endpoint)
    server = None
    config = None
    if not endpoints or args.config or any(e.startswith("tcp://") for e in endpoints):
        try:  # the config names the endpoint, and the CURVE keys a tcp:// endpoint needs
            config, _problem = load_client_config(args.config or default_config_path())
        except ConfigError as exc:
            if not endpoints or args.config:
                return fail(f"{exc} (or give --endpoint)", 78)
    if args.fleet and not endpoints:
        from protocol.fleet import endpoints as fleet_endpoints

        config = config or load_client_config(args.config or default_config_path())[0]
        endpoints = [ep for _k, ep in fleet_endpoints(config, "tap")]
        server = config.supervisor.server_name
    if not endpoints:
        assert config is not None
        endpoints = [config.endpoint("tap")]
        server = config.supervisor.server_name
    shard_of_bot = _shards(config) if args.fleet else None
    context = zmq.Context()
    try:
        sock = connect(context, endpoints, subscriptions(server, args.bot), config)
    except (OSError, ValueError) as exc:
        return fail(f"cannot use the CURVE keys: {exc}")
    colour = sys.stdout.isatty() and not args.json
    matched = 0
    deadline = time.monotonic() + args.timeout if args.timeout is not None else None
    try:
        while args.count is None or matched < args.count:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait is not None and wait <= 0:
                break
            if not sock.poll(None if wait is None else int(wait * 1000) + 1):
                continue
            frames = sock.recv_multipart()
            if len(frames) != 2:
                continue
            topic, payload = frames
            try:
                message = decode(payload)
            except ProtocolError as exc:
                print(f"! undecodable message on {topic[:80]!r}: {exc}", file=sys.stderr)
                continue
            if not matches(message, args.bot, args.type):
                continue
            matched += 1
            shard = None if shard_of_bot is None else shard_of_bot(message.bot)
            if args.json:
                body = msgpack.unpackb(payload, raw=False)
                extra = {} if shard_of_bot is None else {"shard": shard}
                print(json.dumps({"topic": topic.decode(), **extra, **body}, default=repr), flush=True)
            else:
                line = describe_message(message, colour=colour)
                print(line if shard_of_bot is None else f"[{'-' if shard is None else shard}] {line}", flush=True)
                qr = getattr(getattr(message, "data", None), "qr", None)
                if qr and not args.no_qr and sys.stdout.isatty():
                    render_qr(qr)
    except KeyboardInterrupt:
        return 130
    finally:
        sock.close(0)
        context.term()
    done = matched >= args.count if args.count is not None else bool(matched)
    if done or deadline is None:
        return 0
    if config is not None and not _supervisor_alive(config):
        return fail(f"no supervisor is running (nothing answers on {config.endpoint('control')}); "
                    f"{matched} matching message(s) within {args.timeout:g} s")
    wanted = f"{args.count} matching message(s)" if args.count is not None else "a matching message"
    return fail(f"{wanted} did not arrive within {args.timeout:g} s (got {matched})")


def _supervisor_alive(config: Any) -> bool:
    """Whether a supervisor answers ping on the config's control endpoint (one short try)."""
    from protocol.client import ControlClient, ControlError

    try:
        with ControlClient.for_config(config, timeout=1.0) as client:
            client.call("ping")
        return True
    except ControlError:  # NotRunning included
        return False
    except (OSError, ValueError):
        return True  # cannot tell (keys): do not claim it is down


def connect(context: zmq.Context, endpoints: list[str], prefixes: list[str], config: Any = None) -> zmq.Socket:
    """One SUB socket on every endpoint. It reconnects by itself (every 100 ms, protocol/topics.py)
    when a supervisor goes away and comes back, and re-sends its subscriptions: a restarted
    supervisor is picked up again within about 0.2 s with no action here (what it published
    before that is not seen: PUB/SUB keeps nothing for a tap that is not connected)."""
    from protocol.curve import client_keys, secure_client

    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.LINGER, 0)
    rejoin_quickly(sock)
    for prefix in prefixes:
        sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    for endpoint in endpoints:
        if config is not None and endpoint.startswith("tcp://"):
            secure_client(sock, client_keys(config, endpoint))  # applies to the connects that follow
        sock.connect(endpoint)
    return sock


def subscriptions(server: str | None, bot_globs: list[str]) -> list[str]:
    """Prefixes to subscribe to: exact bot ids by prefix when possible, else everything."""
    if server and bot_globs and not any(ch in g for g in bot_globs for ch in "*?["):
        return [bot_prefix(server, bot) for bot in bot_globs]
    return [""]


def matches(message: Any, bot_globs: list[str], types: list[str]) -> bool:
    if bot_globs and not any(fnmatch.fnmatchcase(message.bot, g) for g in bot_globs):
        return False
    if types:
        kind = KIND_OF[type(message)].value
        event_type = message.type.value if isinstance(message, Event) else None
        if kind not in types and event_type not in types:
            return False
    return True


def _shards(config: Any) -> Any:
    """bot id -> its shard by the configuration ([cluster] placement), None for the supervisor's own."""
    from protocol.cluster_config import shard_of

    if config is None or config.cluster is None:
        return lambda _bot: None
    bots = {b.id: b for b in config.bots}
    n = config.cluster.shards
    return lambda bot: shard_of(bots[bot], n) if bot in bots else None
