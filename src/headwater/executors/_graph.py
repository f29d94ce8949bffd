"""Shared by both Dask executors: collect submissions, then hand Dask one graph.

``submit`` records the call and returns a :class:`Pending` placeholder; an
argument that is a Pending (top level, or inside a list or tuple) becomes a
dependency. ``wait`` builds the graph in Dask's documented task-tuple format
in one pass — far cheaper than a ``dask.delayed`` object per call — so the
scheduler gets the whole flow in one message and runs independent tasks in
parallel.

Submitted work runs once: the first ``wait`` computes every call submitted so
far (as futures of other executors would have run anyway), and keeps the
results; a later ``wait`` computes only what was submitted since, with the
results it already has as constants, and answers the rest from them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from headwater.executors.base import leaves, map_structure


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


def _given(value: Any) -> Any:
    return value


def _is_pending(value: Any) -> bool:
    return isinstance(value, Pending)


class GraphBuilder:
    """The calls of one run, turned into a Dask graph when waited on."""

    def __init__(self) -> None:
        self.graph: dict[str, tuple[Any, ...]] = {}
        #: results of the calls computed by earlier waits, by key.
        self.results: dict[str, Any] = {}
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

    def wait(self, futures: Any, compute: Callable[[dict[str, Any], list[str]], list[Any]]) -> Any:
        """The results of ``futures`` (any structure), computing what no earlier wait computed.

        ``compute(graph, keys)`` runs a graph on the executor's scheduler and returns
        the values of ``keys`` in order.
        """
        wanted = [f for f in leaves(futures, _is_pending) if f.key not in self.results]
        if wanted:
            foreign = [f.key for f in wanted if f.key not in self.graph]
            if foreign:
                raise ValueError(f"wait got futures this executor's run did not submit: {', '.join(foreign)}")
            todo = [k for k in self.graph if k not in self.results]
            graph: dict[str, Any] = {k: self.graph[k] for k in todo}
            for done, value in self.results.items():  # computed before: constants, not run again
                graph[done] = (functools.partial(_given, value),)
            self.results.update(zip(todo, compute(graph, todo), strict=True))
        return map_structure(lambda f: self.results[f.key], futures, _is_pending)
