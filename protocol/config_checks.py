"""Checks of a configuration against the machine: endpoints that clash, directories that cannot be.

Run by ``parse_config`` (so ``check-config``, ``run`` and a reload all refuse them up front):
two roles on one endpoint (the second bind would steal the first's socket), and ``auth_dir``,
``run_dir`` or ``log_dir`` under a regular file or inside /proc or /sys. What depends on who runs
the service (write permission) is ``writable_problems``, asked by ``check-config`` and ``run``
only: a client run by another user must still reach the supervisor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: virtual filesystems: nothing botvisor keeps can live there
VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"))
WILDCARD_HOSTS = ("*", "0.0.0.0", "::", "[::]")


def endpoint_clash(endpoints: dict[str, str]) -> tuple[str, str] | None:
    """(role, the earlier role it clashes with) for the first two roles sharing an endpoint."""
    seen: list[tuple[str, str]] = []
    for role, endpoint in endpoints.items():
        for other, earlier in seen:
            if _same_endpoint(endpoint, earlier):
                return role, other
        seen.append((role, endpoint))
    return None


def endpoint_problem(endpoint: str) -> str | None:
    """Why an ipc:// endpoint's socket file can never be made (its directory cannot be), or None."""
    scheme, _, rest = endpoint.partition("://")
    if scheme != "ipc":
        return None
    problem = directory_problem(Path(rest).parent)
    return f"the socket's directory: {problem}" if problem else None


def _same_endpoint(a: str, b: str) -> bool:
    scheme_a, _, rest_a = a.partition("://")
    scheme_b, _, rest_b = b.partition("://")
    if scheme_a != scheme_b:
        return False
    if scheme_a == "ipc":
        return os.path.normpath(rest_a) == os.path.normpath(rest_b)
    if scheme_a == "tcp":
        host_a, _, port_a = rest_a.rpartition(":")
        host_b, _, port_b = rest_b.rpartition(":")
        if port_a != port_b:
            return False
        hosts = {host_a.lower(), host_b.lower()} - {"localhost"} | ({"127.0.0.1"} if "localhost" in
                                                                  (host_a.lower(), host_b.lower()) else set())
        return len(hosts) == 1 or bool(hosts & set(WILDCARD_HOSTS))
    return rest_a == rest_b


def directory_problem(path: Path) -> str | None:
    """Why ``path`` can never be a directory botvisor creates and uses, or None."""
    path = Path(os.path.abspath(path))
    for root in VIRTUAL_ROOTS:
        if path == root or path.is_relative_to(root):
            return f"{path} is inside {root}, a virtual filesystem"
    for candidate in [path, *path.parents]:
        try:
            if candidate.is_dir():
                return None
            if candidate.exists() or candidate.is_symlink():
                kind = "a regular file" if candidate.is_file() else "not a directory"
                where = "is" if candidate == path else f"is under {candidate}, which is"
                return f"{path} {where} {kind}"
        except OSError as exc:  # e.g. a parent we may not search
            return f"{path} cannot be checked: {exc.strerror or exc}"
    return None


def writable_problem(path: Path) -> str | None:
    """Why the current user cannot create or write ``path`` (a directory), or None."""
    path = Path(os.path.abspath(path))
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    if not os.access(existing, os.W_OK | os.X_OK):
        who = f"uid {os.geteuid()}"
        if existing == path:
            return f"{path} is not writable by {who}"
        return f"{path} cannot be created: {existing} is not writable by {who}"
    return None


def directories(config: Any) -> dict[str, Path]:
    """The directories a running service creates, by their key in [supervisor]."""
    found = {"supervisor.auth_dir": config.auth_root, "supervisor.run_dir": config.run_dir}
    if config.log_dir is not None:
        found["supervisor.log_dir"] = config.log_dir
    return found


def writable_problems(config: Any) -> list[tuple[str, str]]:
    """(key, reason) for each directory the current user could not create or write."""
    return [(key, why) for key, path in directories(config).items() if (why := writable_problem(path))]
