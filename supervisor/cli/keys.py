"""Manage CURVE keys for tcp:// endpoints: botvisor keys generate [--dir DIR] [--name NAME].

Writes NAME.key (the public key: give it to the other side) and NAME.key_secret (the key
pair, mode 0600: keep it). For a supervisor: point [security] server_key at its .key_secret.
For a client: point client_key at its .key_secret and copy its .key into the supervisor's
authorized_keys directory.
"""

from __future__ import annotations

import argparse

from .common import EXIT_OK, fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["generate"])
    parser.add_argument("--dir", default="keys", help="where to write the files (default ./keys)")
    parser.add_argument("--name", default="botvisor", help="file name stem (default botvisor)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def execute(args: argparse.Namespace) -> int:
    from pathlib import Path

    from protocol.curve import generate

    target = Path(args.dir)
    existing = [p for p in (target / f"{args.name}.key", target / f"{args.name}.key_secret") if p.exists()]
    if existing and not args.force:
        return fail(f"{existing[0]} exists; not overwriting a key (use --force)")
    public, secret = generate(target, args.name)
    print(f"public key: {public}")
    print(f"secret key: {secret} (mode 0600)")
    return EXIT_OK
