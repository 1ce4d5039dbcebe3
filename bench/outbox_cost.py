"""What the durable outbox adds to one send: ``python -m bench.outbox_cost [--sends N] [--dir D]``.

Each send goes through ``Outbox.submit`` on the real simulated backend with the rate limit out
of the way (sent at once: one committed insert, the backend call, one committed update), in a
fresh bot directory on the filesystem of ``--dir`` (left there: the temp dir by default). Printed against the backend called alone,
which is what the in-memory queue before the outbox cost. Short by default (300 sends per
row); the disk and its neighbours decide the tail, so read p99 as this machine's, not the code's.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable


def _quantiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000  # noqa: E731
    return pick(0.5), pick(0.99), ordered[-1] * 1000


def measure(sends: int = 300, base: Path | None = None) -> dict[str, tuple[float, float, float]]:
    """Milliseconds per send (p50, p99, max): backend alone, outbox_sync normal, outbox_sync full."""
    from protocol.config import BotConfig
    from worker.backends.base import BackendContext
    from worker.backends.simulated import SimulatedBackend
    from worker.outbox import Outbox
    from worker.ratelimit import TokenBucket

    def session() -> tuple[SimulatedBackend, Path]:
        bot_dir = Path(tempfile.mkdtemp(prefix="bv-outbox-", dir=base)) / "auth" / "bench" / "bot_bench"
        bot_dir.mkdir(parents=True, mode=0o700)  # the worker's layout: the metadata stays inside
        backend = SimulatedBackend(BackendContext(bot=BotConfig(id="bench"), bot_dir=bot_dir, emit=lambda e: None,
                                                  log=logging.getLogger("bench.outbox")))
        backend.start(0.0)
        backend.poll(1.0)  # open
        return backend, bot_dir

    def timed(send: Callable[[int], object]) -> list[float]:
        samples = []
        for i in range(sends):
            t = time.perf_counter()
            send(i)
            samples.append(time.perf_counter() - t)
        return samples

    results: dict[str, tuple[float, float, float]] = {}
    backend, _ = session()
    results["backend alone (no outbox)"] = _quantiles(timed(lambda i: backend.send_text("1@s.whatsapp.net", f"m{i}")))
    for sync in ("normal", "full"):
        backend, bot_dir = session()
        outbox = Outbox.for_bot_dir(backend, TokenBucket(rate=1e9, burst=1e9), bot_dir, lambda e: None, sync=sync)
        results[f"outbox, outbox_sync = {sync}"] = _quantiles(
            timed(lambda i: outbox.submit("send", {"to": "1@s.whatsapp.net", "text": f"m{i}"}, float(i)))
        )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.outbox_cost", description=__doc__.splitlines()[0])
    p.add_argument("--sends", type=int, default=300, help="sends per row (default 300)")
    p.add_argument("--dir", type=Path, default=None, help="where the bot directories go (default: the temp dir)")
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)
    rows = measure(args.sends, args.dir)
    print(f"| one send ({args.sends} per row) | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    for name, (p50, p99, worst) in rows.items():
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {worst:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
