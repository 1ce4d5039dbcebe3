"""Imports point down only: protocol/ is the shared leaf, worker/ never imports supervisor/,
and the bot authors' package (botvisor/) uses only protocol/ and worker/ (the process it runs in).

Read from the source with ast, so a new import anywhere in a package is checked without running it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: package -> top-level packages of this project it must never import
FORBIDDEN = {
    "protocol": {"supervisor", "worker", "gateway", "botvisor"},
    "worker": {"supervisor", "gateway"},
    "botvisor": {"supervisor", "gateway"},
    "gateway": {"worker", "botvisor"},
}


def imported_tops(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down_only(package: str) -> None:
    pkg = ROOT / package
    if not pkg.is_dir():
        pytest.skip(f"{package}/ does not exist yet")
    offenders = [f"{path.relative_to(ROOT)} imports {sorted(bad)}"
                 for path in sorted(pkg.rglob("*.py"))
                 if (bad := imported_tops(path) & FORBIDDEN[package])]
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import os\nfrom supervisor.restart import backoff_delay\n")
    assert "supervisor" in imported_tops(bad)
