"""What a neonize worker's start costs, in parts: ``python -m bench.neonize_start [--runs N]``.

The parts a worker goes through after its hello (worker/backends/neonize.py): importing neonize
(the Go library loads, its runtime starts), making the client, and the first dial (to a refused
loopback proxy: no network). CPU seconds of the whole process (every thread, Go's included) and
wall seconds for each, in a fresh process per run, with neonize's Python half preloaded as the
forkserver does. The import is what the start gate (worker/start_gate.py) queues.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, resource, socket, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

import worker.neonize_preload as preload
preload.preload()
marks = [(cpu(), time.perf_counter())]
import worker.backends.neonize as backend
marks.append((cpu(), time.perf_counter()))
from neonize._binder import ProxySettings
from neonize.client import NewClient
client = NewClient(backend.store_uri(Path(tempfile.mkdtemp())), uuid="bench")
marks.append((cpu(), time.perf_counter()))
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
done = threading.Event()

def dial():
    try:
        client.connect(ProxySettings(proxy_address=f"http://127.0.0.1:{port}"))
    except Exception:
        pass
    done.set()

threading.Thread(target=dial, daemon=True).start()
done.wait(30)
marks.append((cpu(), time.perf_counter()))
parts = ["import neonize", "NewClient", "first dial (refused)"]
print(json.dumps({p: [marks[i + 1][0] - marks[i][0], marks[i + 1][1] - marks[i][1]] for i, p in enumerate(parts)}))
sys.stdout.flush()
os._exit(0)  # Go's threads: no interpreter exit
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.neonize_start", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    repo = str(Path(__file__).resolve().parent.parent)
    print("| run | part | CPU s | wall s |\n|---|---|---|---|")
    for run in range(1, args.runs + 1):
        out = subprocess.run([sys.executable, "-c", CHILD, repo], capture_output=True, text=True, timeout=120)
        line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
        if line is None:
            print(f"run {run} failed: {out.stderr[-500:]}", file=sys.stderr)
            return 1
        for part, (cpu, wall) in json.loads(line).items():
            print(f"| {run} | {part} | {cpu:.3f} | {wall:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
