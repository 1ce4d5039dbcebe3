"""The supervisor's own logging: the same structured lines as the workers' (worker.logs)."""

from __future__ import annotations

import logging
import sys

from worker.logs import LineFormatter


def configure_supervisor_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter("-"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
