"""The forkserver's last preload (supervisor/process.py): what it imported is frozen out of the
garbage collector before the first fork.

A full collection walks every tracked object and writes to its header. In a worker (once it
has loaded its backend: before its hello it does not collect), each full collection would walk
everything the forkserver preloaded, which the worker shares copy-on-write: a private copy of
each page it touches (1.4 MiB of USS per neonize worker, bench/ISSUE18-notes.md §9). ``gc.freeze`` moves those objects to the permanent generation, which no collection
walks, so they stay shared (they are never freed; they never were: the forkserver lives as
long as the supervisor). The import does nothing in any other process.
"""

import gc

from .lifeline import in_forkserver

if in_forkserver():
    gc.freeze()
