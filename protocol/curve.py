"""CURVE security for tcp:// control and tap endpoints (pyzmq's zmq.auth).

The supervisor holds a key pair (``server_key``) and accepts only clients whose public key
file sits in ``authorized_keys``; the check is done by a ZAP handler (zmq.auth's
ThreadAuthenticator, its own thread and socket). Clients present ``client_key`` and pin the
supervisor's public key. ipc:// endpoints use none of this: the 0700 run_dir guards them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

#: ZAP domain of botvisor's secured sockets
DOMAIN = "botvisor"


@dataclasses.dataclass(frozen=True, slots=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def generate(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (public) and ``name.key_secret`` (0600) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def _load(path: str, need_secret: bool) -> tuple[bytes, bytes | None]:
    public, secret = zmq.auth.load_certificate(path)
    if need_secret and not secret:
        raise ValueError(f"{path} holds no secret key (give the .key_secret file)")
    return public, secret


def check_keys(security: Any) -> tuple[str, str] | None:
    """``(key, reason)`` for the first unusable key setting, or None."""
    for name, need_secret in (("server_key", True), ("server_public_key", False), ("client_key", True)):
        path = getattr(security, name)
        if path:
            try:
                _load(path, need_secret)
            except (OSError, ValueError) as exc:
                return name, f"cannot read a CURVE key from {path}: {exc}"
    if security.authorized_keys and not Path(security.authorized_keys).is_dir():
        return "authorized_keys", f"{security.authorized_keys} is not a directory of public .key files"
    return None


def client_keys(config: Any, endpoint: str) -> ClientKeys | None:
    """The keys a client needs for ``endpoint`` (None for ipc://, or when none are configured)."""
    sec = config.security
    if not endpoint.startswith("tcp://") or not (sec.server_key or sec.server_public_key):
        return None
    server_public, _ = _load(sec.server_public_key or sec.server_key, need_secret=False)
    if not sec.client_key:
        return None  # the supervisor will refuse us; the caller says so on timeout
    public, secret = _load(sec.client_key, need_secret=True)
    assert secret is not None
    return ClientKeys(public, secret, server_public)


def secure_client(sock: zmq.Socket, keys: ClientKeys | None) -> None:
    if keys is not None:
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret
        sock.curve_serverkey = keys.server_public


def start_authenticator(context: zmq.Context, config: Any) -> Any:
    """A running ZAP handler accepting the authorised keys, or None when no endpoint needs it."""
    if not any(config.endpoint(role).startswith("tcp://") for role in ("control", "tap")):
        return None
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain=DOMAIN, location=config.security.authorized_keys)
    return auth


def secure_server(sock: zmq.Socket, config: Any, role: str) -> None:
    """Make ``sock`` a CURVE server before it binds, when its endpoint is tcp://."""
    if not config.endpoint(role).startswith("tcp://"):
        return
    public, secret = _load(config.security.server_key, need_secret=True)
    sock.zap_domain = DOMAIN.encode()
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
