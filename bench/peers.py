"""The peers' own virtual environment: circus, supervisord and py-spy, never in botvisor's.

Created on first use in bench/.peers/venv (gitignored) with the ordinary ``pip``.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
VENV = PEERS_DIR / "venv"
PACKAGES = ["circus", "supervisor", "py-spy"]


def bin_dir() -> Path:
    return VENV / "bin"


def tool(name: str) -> Path | None:
    path = bin_dir() / name
    return path if path.exists() else None


def ensure(log: Path | None = None) -> tuple[bool, str]:
    """Create the venv and install the peers if needed; (ok, why not)."""
    if tool("circusd") and tool("supervisord"):
        return True, ""
    try:
        if not (bin_dir() / "python").exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        result = subprocess.run([str(bin_dir() / "python"), "-m", "pip", "install", "-q", *PACKAGES],
                                capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"could not create {VENV}: {exc}"
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0 or not (tool("circusd") and tool("supervisord")):
        return False, f"pip install {' '.join(PACKAGES)} failed: {result.stderr.strip()[-500:]}"
    return True, ""


def versions() -> dict[str, str]:
    """Installed versions of the peers (from their venv's metadata)."""
    python = bin_dir() / "python"
    if not python.exists():
        return {}
    code = "import importlib.metadata as m, json, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    try:
        out = subprocess.run([str(python), "-c", code, *PACKAGES], capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}
