"""Shared by both Dask executors: build one Dask graph per run from submissions.

Submissions become ``dask.delayed`` calls that name their upstream calls as
arguments, and ``wait`` hands the whole graph to a scheduler in one go, so the
scheduler sees the flow at once (one message, not one per task) and runs
independent tasks in parallel.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any


def delayed_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None) -> Any:
    """A ``dask.delayed`` call of ``fn`` with a readable, unique key."""
    from dask import delayed

    name = f"{key or getattr(fn, '__name__', 'call')}-{uuid.uuid4().hex[:12]}"
    return delayed(fn, pure=False)(*args, dask_key_name=name, **kwargs)
