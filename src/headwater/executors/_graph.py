"""Shared by both Dask executors: collect submissions, then hand Dask one graph.

``submit`` records the call and returns a :class:`Pending` placeholder; an
argument that is a Pending (top level, or inside a list or tuple) becomes a
dependency. ``wait`` builds the graph in Dask's documented task-tuple format
in one pass — far cheaper than a ``dask.delayed`` object per call — so the
scheduler gets the whole flow in one message and runs independent tasks in
parallel.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any


class Pending:
    """A call submitted to a Dask executor, not yet sent; ``key`` names it in the graph."""

    __slots__ = ("key", "task")

    def __init__(self, key: str, task: tuple[Any, ...]) -> None:
        self.key = key
        self.task = task

    def __repr__(self) -> str:
        return f"<Pending: {self.key}>"


def _arg(value: Any) -> Any:
    if isinstance(value, Pending):
        return value.key
    if type(value) is list:
        return [_arg(v) for v in value]
    if type(value) is tuple:
        # a tuple starting with a callable would read as a task: keep tuples as lists of parts
        return (tuple, [_arg(v) for v in value])
    return value


class GraphBuilder:
    """The calls of one run, turned into a Dask graph when waited on."""

    def __init__(self) -> None:
        self.graph: dict[str, tuple[Any, ...]] = {}
        self._run = uuid.uuid4().hex[:12]
        self._count = 0

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None) -> Pending:
        self._count += 1
        name = f"{key or getattr(fn, '__name__', 'call')}-{self._run}-{self._count}"
        if kwargs:
            if any(isinstance(v, Pending) for v in kwargs.values()):
                raise TypeError("Dask executors take futures as positional arguments only")
            fn = functools.partial(fn, **kwargs)
        task = (fn, *(_arg(a) for a in args))
        self.graph[name] = task
        return Pending(name, task)

    def keys(self, futures: Any) -> Any:
        """The graph keys in the shape of ``futures`` (a Pending, or a list/dict of them)."""
        if isinstance(futures, Pending):
            return futures.key
        if isinstance(futures, dict):
            return [self.keys(v) for v in futures.values()]
        return [self.keys(f) for f in futures]

    @staticmethod
    def reshape(futures: Any, results: Any) -> Any:
        """Put ``results`` (from :meth:`keys`' shape) back into the shape of ``futures``."""
        if isinstance(futures, dict):
            return dict(zip(futures, results, strict=True))
        return results
