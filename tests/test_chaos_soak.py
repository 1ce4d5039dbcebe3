"""The chaos soak's 30-second form, as CI runs it (issue 14); the full one is `python -m bench.chaos`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .harness import REPO


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_thirty_second_chaos_soak_passes_every_check(tmp_path):
    out = tmp_path / "chaos.json"
    proc = subprocess.run([sys.executable, "-m", "bench.chaos", "--duration", "30", "--seed", "14", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=380)
    assert "chaos soak: seed 14, 30 s of chaos" in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "| FAIL |" not in proc.stdout
    assert proc.stdout.count("| PASS |") >= 15
