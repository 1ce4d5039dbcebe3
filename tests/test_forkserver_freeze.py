"""The forkserver freezes what it preloaded (worker/forkserver_freeze.py): a worker's collections
never walk the shared objects, so its first full collection copies none of their pages."""

from __future__ import annotations

import json
import subprocess
import sys

from .harness import REPO

# in a fresh interpreter: the forkserver's preload is fixed by the first context a process makes
CHILD = """
import gc, json, multiprocess
from supervisor.process import worker_context, stop_forkserver

def frozen(queue):  # pickled by value (dill): it imports what it uses
    import gc
    queue.put(gc.get_freeze_count())

ctx = worker_context()
queue = ctx.Queue()
p = ctx.Process(target=frozen, args=(queue,))
p.start()
count = queue.get(timeout=30)
p.join(30)
stop_forkserver()
print(json.dumps({"worker": count, "here": gc.get_freeze_count()}))
"""


def test_a_worker_starts_with_the_forkservers_preload_frozen():
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["here"] == 0, "only the forkserver freezes: the supervisor's own objects are collected as usual"
    # worker.main, zmq, msgpack and the simulated backend: tens of thousands of objects
    assert counts["worker"] > 10_000, counts
