"""``botvisor gateway`` (run it; ``keys add|list|revoke``) and ``botvisor webhooks``.

Both work on the files the config names, so they need no running gateway: keys are read by
the gateway when the file changes, and the outbox's changes are picked up within a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from protocol.config import ConfigError, default_config_path, load_config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78


def _config(args: argparse.Namespace) -> Any:
    try:
        return load_config(args.config or default_config_path())
    except ConfigError as exc:
        print(f"botvisor: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _config_arg(parser: argparse.ArgumentParser, top: bool = False) -> None:
    parser.add_argument("-c", "--config", default=None if top else argparse.SUPPRESS,
                        help="the TOML file (default: $BOTVISOR_CONFIG, else ./botvisor.toml)")


# -- botvisor gateway ----------------------------------------------------------------------
def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    _config_arg(parser, top=True)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    sub = parser.add_subparsers(dest="gateway_command", metavar="keys")
    keys = sub.add_parser("keys", help="API keys: add, list, revoke")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add = ksub.add_parser("add", help="make a key (printed once; only its hash is stored)")
    add.add_argument("name")
    add.add_argument("--bots", nargs="+", default=["*"], metavar="GLOB", help="bots the key may see (default *)")
    add.add_argument("--read-only", action="store_true", help="the key may read, never act")
    _config_arg(add)
    lst = ksub.add_parser("list", help="the keys (names and scopes; never the keys)")
    lst.add_argument("--json", action="store_true")
    _config_arg(lst)
    rev = ksub.add_parser("revoke", help="delete a key (requests with it get 401 at once)")
    rev.add_argument("name")
    _config_arg(rev)


def execute_gateway(args: argparse.Namespace) -> int:
    config = _config(args)
    if getattr(args, "gateway_command", None) == "keys":
        return _keys(args, config)
    from .main import serve
    from .runtime import own_shard

    try:
        own_shard(config)  # a [cluster] gateway that cannot tell its shard says so before it binds
    except ConfigError as exc:
        print(f"botvisor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return serve(config, args.log_level)


def _keys(args: argparse.Namespace, config: Any) -> int:
    from .keys import KeyError_, KeyStore
    from .runtime import keys_path

    store = KeyStore(keys_path(config))
    try:
        if args.keys_command == "add":
            key = store.add(args.name, args.bots, args.read_only)
            print(key)
            print(f"botvisor: key {args.name!r} added ({'read-only' if args.read_only else 'full'}, bots "
                  f"{' '.join(args.bots)}); it is shown only now", file=sys.stderr)
        elif args.keys_command == "revoke":
            store.revoke(args.name)
            print(f"key {args.name!r} revoked")
        else:
            keys = [k.public() for k in store.keys()]
            if args.json:
                print(json.dumps(keys))
            else:
                for k in keys:
                    print(f"{k['name']:<24} {'read-only' if k['read_only'] else 'full':<10} {' '.join(k['bots'])}")
    except KeyError_ as exc:
        print(f"botvisor: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


# -- botvisor webhooks ---------------------------------------------------------------------
def add_webhooks_arguments(parser: argparse.ArgumentParser) -> None:
    _config_arg(parser, top=True)
    sub = parser.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="endpoints (state, depth) and dead letters")
    lst.add_argument("--endpoint", default=None)
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true")
    _config_arg(lst)
    for name, text in (("retry", "queue dead letters again"), ("purge", "delete dead letters")):
        p = sub.add_parser(name, help=text + " (all, or --id / --endpoint)")
        p.add_argument("--id", type=int, action="append", default=None, dest="ids", metavar="ID")
        p.add_argument("--endpoint", default=None)
        _config_arg(p)
    for name, text in (("pause", "pause an endpoint"), ("resume", "resume a paused endpoint")):
        p = sub.add_parser(name, help=text)
        p.add_argument("endpoint")
        _config_arg(p)


def execute_webhooks(args: argparse.Namespace) -> int:
    from .runtime import data_dir
    from .webhooks.store import FILE, Store

    config = _config(args)
    path = data_dir(config) / FILE
    if not path.exists():
        print(f"botvisor: no outbox at {path} (has the gateway run?)", file=sys.stderr)
        return EXIT_FAILURE
    store = Store(path, config.gateway.outbox_limit, config.gateway.outbox_sync)
    try:
        command = args.webhooks_command
        if command == "retry":
            print(f"{store.retry(args.ids, args.endpoint)} dead letter(s) queued again")
        elif command == "purge":
            print(f"{store.purge(args.ids, args.endpoint)} dead letter(s) deleted")
        elif command in ("pause", "resume"):
            store.set_paused(args.endpoint, command == "pause", "paused by an operator" if command == "pause" else None)
            print(f"endpoint {args.endpoint!r} {command}d (a running gateway applies it within a second)")
        else:
            return _list(store, args)
    finally:
        store.close()
    return EXIT_OK


def _list(store: Any, args: argparse.Namespace) -> int:
    depth, paused = store.depth(), store.paused()
    rows = store.dead(args.endpoint, args.limit)
    if args.json:
        print(json.dumps({"endpoints": {n: {**d, "paused": n in paused} for n, d in depth.items()},
                          "counters": store.counters(), "dead": [r.public() for r in rows]}))
        return EXIT_OK
    now = time.time()
    print(f"{'ENDPOINT':<28} {'STATE':<8} {'PENDING':>8} {'DEAD':>6} {'OLDEST':>8}")
    for name, d in sorted(depth.items()):
        age = f"{now - d['oldest_pending']:.0f}s" if d["oldest_pending"] else "-"
        print(f"{name:<28} {'paused' if name in paused else 'active':<8} {d['pending']:>8} {d['dead']:>6} {age:>8}")
    if rows:
        print(f"\n{'ID':>8} {'ENDPOINT':<20} {'BOT':<16} {'TYPE':<18} {'TRIES':>5}  LAST ERROR")
        for r in rows:
            print(f"{r.id:>8} {r.endpoint:<20} {r.bot:<16} {r.type:<18} {r.attempts:>5}  {r.last_error or ''}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway")
    add_gateway_arguments(parser)
    args = parser.parse_args(argv)
    return execute_gateway(args)
