"""Every refused configuration of the matrix is refused with its key and reason, and the docs'
table is exactly what the matrix produces (issue 14, "Bad input, as a table in the docs")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .bad_configs import CASES, all_messages, render, run_case
from .harness import REPO

DOC = REPO / "docs" / "refused-configurations.md"


def test_the_matrix_has_at_least_forty_cases_in_every_kind_the_issue_names():
    assert len(CASES) >= 40
    assert {c.group for c in CASES} >= {"syntax", "types", "unknown keys", "ids", "nan and infinities",
                                       "negative and zero", "timeout below interval", "endpoints", "paths",
                                       "missing files", "unknown values"}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.what}" for c in CASES])
def test_each_bad_configuration_is_refused_naming_what_is_wrong(case, tmp_path):
    message = run_case(case, tmp_path)
    assert message != "(accepted)", f"{case.what}: accepted"
    assert case.expect in message, message


def test_the_docs_table_is_generated_from_the_matrix():
    expected = render(all_messages())
    assert DOC.read_text() == expected, (
        "docs/refused-configurations.md is out of date: python -m tests.bad_configs > docs/refused-configurations.md")


def test_check_config_exits_78_with_the_key_and_reason(tmp_path):
    path = tmp_path / "botvisor.toml"
    path.write_text('[endpoints]\nevents = "ipc:///tmp/bv-same.sock"\ntap = "ipc:///tmp/bv-same.sock"\n'
                    '[[bots]]\nid = "a"\n')
    proc = subprocess.run([sys.executable, "-m", "supervisor.cli", "check-config", "-c", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 78
    assert "endpoints.tap" in proc.stderr and "each role needs an endpoint of its own" in proc.stderr
