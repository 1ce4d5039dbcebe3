"""Where a process spends its CPU: py-spy (from the peers' venv) sampled for a few seconds.

``top`` returns the functions with the most samples on top of the stack (self) and anywhere
on it (inclusive), as percentages of the samples in which the process was busy.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from .peers import tool


def top(pid: int, seconds: float, out: Path, limit: int = 8) -> dict[str, Any] | None:
    py_spy = tool("py-spy")
    if py_spy is None:
        return None
    raw = out.with_suffix(".raw")
    try:
        subprocess.run([str(py_spy), "record", "--pid", str(pid), "--duration", str(int(max(1, seconds))),
                        "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(raw)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 30, check=False)
    except subprocess.TimeoutExpired:
        return None
    if not raw.exists():
        return None
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}
    lines = [f"{n * 100 / total:5.1f}% self  {name}" for name, n in own.most_common(limit)]
    lines += [f"{n * 100 / total:5.1f}% incl  {name}" for name, n in inclusive.most_common(limit * 2)]
    out.write_text("\n".join(lines) + "\n")
    return {"samples": total,
            "self": [(name, round(n * 100 / total, 1)) for name, n in own.most_common(limit)],
            "inclusive": [(name, round(n * 100 / total, 1)) for name, n in inclusive.most_common(limit * 2)]}
