"""The Go runtime's settings in a neonize worker, put in the environment before the Go library loads.

neonize's library is a Go runtime per worker. By default it starts one scheduler thread (a "P")
per CPU and spins idle ones looking for work, which a WhatsApp session, waiting on one socket,
never needs. With hundreds of workers per host those runtimes compete with each other and with
the supervisor that is still forking the rest of the fleet: `python -m bench.issue18 --only
neonize --neonize-n 200` measured all hellos at 8.9 s with Go's default and 4.7 s with
GOMAXPROCS=1, all dialled at 18.1 s and 13.4 s, USS per worker unchanged (18.8 / 18.7 MiB).

Go reads its environment once, when its runtime starts (the library's load in the worker), and
from the process's initial environment, not from what Python's ``os.environ`` changed later
(measured: set in the worker before the load, GODEBUG=schedtrace still printed gomaxprocs=2).
A forked worker's initial environment is the forkserver's, so the supervisor calls
``configure`` before it starts the forkserver (supervisor/process.py, ``worker_context``).
Every worker inherits them; only Go programs read them. A value the operator set in the
service's environment is kept.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: per neonize worker; the operator's environment wins (docs/neonize.md, "The Go runtime's environment")
DEFAULTS = {"GOMAXPROCS": "1"}


def configure(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set every default the environment does not already give; the settings in effect."""
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in DEFAULTS}
