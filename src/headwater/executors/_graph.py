"""Shared by both Dask executors: collect submissions, then hand Dask one graph.

``submit`` records the call and returns a :class:`Pending` placeholder; an
argument that is a Pending (top level, or inside a list or tuple) becomes a
dependency. ``wait`` builds the graph in Dask's documented task-tuple format
in one pass — far cheaper than a ``dask.delayed`` object per call — so the
scheduler gets the whole flow in one message and runs independent tasks in
parallel. DaskExecutor asks for the packed form instead (``_packed.py``): the
calls' functions and arguments pickled once, each Dask task an index into them.

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

from headwater.executors._packed import packed_graph
from headwater.executors.base import leaves, map_structure


class Pending:
    """A call submitted to a Dask executor, not yet sent; ``key`` names it in the graph."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"<Pending: {self.key}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Pending, (self.key,))


def _arg(value: Any) -> Any:
    if isinstance(value, Pending):
        return value.key
    if type(value) is list:
        return [_arg(v) for v in value]
    if type(value) is tuple:
        # a tuple starting with a callable would read as a task: keep tuples as lists of parts
        return (tuple, [_arg(v) for v in value])
    return value


def _holds_pending(value: Any) -> bool:
    """Whether ``value`` is a Pending or a list or tuple holding one (what :func:`_arg` resolves)."""
    if isinstance(value, Pending):
        return True
    if type(value) is list or type(value) is tuple:
        return any(_holds_pending(v) for v in value)
    return False


def _given(value: Any) -> Any:
    return value


def _is_pending(value: Any) -> bool:
    return isinstance(value, Pending)


class GraphBuilder:
    """The calls of one run, turned into a Dask graph when waited on.

    Args:
        pack_from: when a wait computes at least this many calls, build the graph
            in the packed form (``_packed.py``: the calls' functions and arguments
            pickled once, each Dask task an index into them) — for schedulers that
            send tasks to other processes. Otherwise, and by default (None), Dask's
            task tuples, each carrying its own function and arguments.
    """

    def __init__(self, pack_from: int | None = None) -> None:
        #: every call submitted in this run: key -> (function, its positional arguments).
        self.calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        #: results of the calls computed by earlier waits, by key.
        self.results: dict[str, Any] = {}
        self.pack_from = pack_from
        self._run = uuid.uuid4().hex[:12]
        self._count = 0
        self._waits = 0

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None) -> Pending:
        self._count += 1
        name = f"{key or getattr(fn, '__name__', 'call')}-{self._run}-{self._count}"
        if kwargs:
            if any(isinstance(v, Pending) for v in kwargs.values()):
                raise TypeError("Dask executors take futures as positional arguments only")
            fn = functools.partial(fn, **kwargs)
        self.calls[name] = (fn, args)
        return Pending(name)

    def wait(self, futures: Any, compute: Callable[[dict[str, Any], list[str]], list[Any]]) -> Any:
        """The results of ``futures`` (any structure), computing what no earlier wait computed.

        ``compute(graph, keys)`` runs a graph on the executor's scheduler and returns
        the values of ``keys`` in order.
        """
        wanted = [f for f in leaves(futures, _is_pending) if f.key not in self.results]
        if wanted:
            foreign = [f.key for f in wanted if f.key not in self.calls]
            if foreign:
                raise ValueError(f"wait got futures this executor's run did not submit: {', '.join(foreign)}")
            todo = [k for k in self.calls if k not in self.results]
            graph = self.graph(todo)
            for done, value in self.results.items():  # computed before: constants, not run again
                graph[done] = (functools.partial(_given, value),)
            self.results.update(zip(todo, compute(graph, todo), strict=True))
        return map_structure(lambda f: self.results[f.key], futures, _is_pending)

    def graph(self, keys: list[str]) -> dict[str, Any]:
        """The Dask graph of the calls ``keys`` (their futures on calls outside ``keys`` not included)."""
        calls = self.calls
        if self.pack_from is None or len(keys) < self.pack_from:
            return {k: (calls[k][0], *(_arg(a) for a in calls[k][1])) for k in keys}
        self._waits += 1
        return packed_graph(
            f"headwater-calls-{self._run}-{self._waits}",
            ((k, *calls[k]) for k in keys),
            _holds_pending,
            _arg,
        )
