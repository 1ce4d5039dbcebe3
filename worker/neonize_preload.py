"""neonize's pure-Python half, imported in the forkserver so every neonize worker shares it.

Importing the ``neonize`` package runs its ``__init__``, which imports ``neonize.client``, which
loads the Go library, whose runtime starts threads that do not survive fork: the forkserver
must never do that. But most of what a neonize worker imports after fork is plain Python:
68 generated protobuf modules (``neonize.proto.*``, their descriptors built into protobuf's
C pool), neonize's utilities, httpx, asyncio, concurrent.futures. Imported after fork, each
worker builds its own private copy of them; imported here, before fork, they are shared
copy-on-write (measured: bench/RESULTS-notes.md, USS per neonize worker).

So this module registers the ``neonize`` package without running its ``__init__`` and imports
every submodule that does not need the Go library (an import of ``neonize._binder`` or
``neonize.client`` is refused while it runs, and a submodule that needs one is left for the
worker). ``complete()``, called by the worker's neonize backend before it imports neonize,
runs the package's ``__init__`` in the same module object, so the worker ends with exactly
the package a plain ``import neonize`` gives.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path
from typing import Any

#: what needs the Go library (or starts threads): never imported before fork
GO_MODULES = ("neonize._binder", "neonize.client", "neonize.aioze")
#: the third-party and stdlib modules neonize.client imports beside its own (none starts a thread)
COMPANIONS = ("httpx", "asyncio", "concurrent.futures.thread", "concurrent.futures.process", "uuid",
              "multiprocessing.connection")
_PENDING = "_botvisor_pending_init"


class _RefuseGo(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in GO_MODULES or name.startswith(tuple(m + "." for m in GO_MODULES)):
            raise ImportError(f"{name} is not imported before fork (it loads the Go runtime)")
        return None


def preload() -> list[str]:
    """Register ``neonize`` uninitialised and import its pure submodules; the names imported."""
    if "neonize" in sys.modules:
        return []
    spec = importlib.util.find_spec("neonize")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return []
    for name in COMPANIONS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    package = importlib.util.module_from_spec(spec)
    setattr(package, _PENDING, spec)
    sys.modules["neonize"] = package
    root = Path(next(iter(spec.submodule_search_locations)))
    names = sorted(_module_name(root, path) for path in root.rglob("*.py") if path.name != "__init__.py")
    guard = _RefuseGo()
    sys.meta_path.insert(0, guard)
    loaded = []
    try:
        for name in names:
            if name in sys.modules or name.startswith(GO_MODULES):
                continue
            before = set(sys.modules)
            try:
                importlib.import_module(name)
                loaded.append(name)
            except Exception:  # needs the Go library (or anything else): the worker imports it itself
                for partial in set(sys.modules) - before:
                    if partial.startswith("neonize."):
                        del sys.modules[partial]
    finally:
        sys.meta_path.remove(guard)
    _stop_log_thread()
    return loaded


def complete() -> None:
    """Run the ``neonize`` package's ``__init__`` if preload registered it without: call before
    importing anything from neonize (it loads the Go library, as ``import neonize`` does)."""
    package = sys.modules.get("neonize")
    spec = getattr(package, _PENDING, None)
    if spec is None:
        return
    delattr(package, _PENDING)
    _start_log_thread()
    spec.loader.exec_module(package)


# neonize.utils.log starts a thread at import that hands whatsmeow's log lines (queued by the Go
# side's callback) to Python logging. A fork copies only the forking thread, so the forkserver
# must hold no other (Python 3.12 warns about forking with threads): preload ends the thread
# once the module is imported, and complete() starts the worker's own before Go can log.
def _stop_log_thread() -> None:
    log = sys.modules.get("neonize.utils.log")
    thread = getattr(log, "_thread", None)
    if thread is None or not thread.is_alive():
        return
    log._log_queue.put(None)  # _worker's sentinel (its shutdown_log_worker() puts one it ignores)
    thread.join(5)


def _start_log_thread() -> None:
    import threading

    log = sys.modules.get("neonize.utils.log")
    thread = getattr(log, "_thread", None)
    if thread is None or thread.is_alive():
        return
    log._thread = threading.Thread(target=log._worker, name="neonize-log", daemon=True)
    log._thread.start()


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts)


if __name__ != "__main__":  # the forkserver imports this module by name (supervisor/process.py)
    try:
        preload()
    except Exception:  # never break the forkserver: a worker then imports neonize all by itself
        pass
