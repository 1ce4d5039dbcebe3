"""Imported by the forkserver's preload (supervisor/process.py): arms it (worker/lifeline.py).

The preload list is the one hook multiprocess gives into the forkserver before it forks; the
import does nothing in any other process.
"""

from .lifeline import arm_forkserver, in_forkserver

if in_forkserver():
    arm_forkserver()
