"""Keeping Python's cyclic garbage collector off the built flow while it runs.

A flow of N tasks is a few objects per task (tasks, their attributes, edges,
the run's plan), all alive for the whole run. Every full collection the run's
own allocations set off walks all of them again, so with 100,000 tasks the
collector's share of the per-task time grew with N (measured: 1.2–2.4× the
per-task time at N = 1,000). :func:`spared` freezes what exists when a run
starts (``gc.freeze()``: moved to a generation the collector never walks) and
unfreezes it when the run ends, however it ends.

Freezing, rather than switching the collector off, keeps it working for what
the run creates: reference cycles a task makes are new objects, collected as
usual while the run goes on. What was alive before the run and becomes cyclic
garbage during it is collected after the run (frozen objects are not lost,
only not looked at until then).

The collector's frozen generation is one per process, so this freezes only
when nothing else has frozen objects (an application that calls
``gc.freeze()`` itself, e.g. before forking workers, keeps its own), and only
in the outermost of nested or concurrent runs; the last run to end unfreezes.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_runs = 0  # runs inside spared() now, in any thread
_froze = False  # whether the first of them froze (so the last one unfreezes)


@contextmanager
def spared() -> Iterator[None]:
    """Freeze the objects alive now for the duration of the block (see the module's docstring)."""
    global _runs, _froze
    with _lock:
        if _runs == 0:
            _froze = gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _froze:
                _froze = False
                gc.unfreeze()
