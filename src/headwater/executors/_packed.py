"""DaskExecutor's graph form: what the calls carry travels once, each Dask task only an index.

In the plain task-tuple form (``_graph.py``) every Dask task carries its own
function and arguments, and the scheduler pickles each of them on its own when
it sends the task to a worker: the engine's ``run_task``, the task's call (with
the headwater Task object and its function) and the run's context, again and
again — ≈ 950 bytes and a cloudpickle call per task, and Dask's ``Client.get``
tokenizes all of it (by pickling) before anything is sent. That was most of
what DaskExecutor cost beyond raw ``client.map`` (docs/benchmarks.md).

Here the functions and every argument that is no future are pickled together,
once per ``wait`` (one pickler: a function, a class or the context shared by
many calls is written once), into a :class:`Packed` payload that is one node of
the graph. Each call's node is ``(call_packed, payload key, index, *the
arguments that hold futures)``; it depends on the payload, which a worker
receives (or fetches from another worker) once and unpickles once. The
scheduler only ever copies the payload's bytes. If the worker holding it dies,
the scheduler makes it again from the graph, as any other task.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterable
from typing import Any

#: what one call keeps in the payload: its function, its arguments (None where a
#: future's value goes) and the positions those futures' values fill, in order.
Entry = tuple[Callable[..., Any], tuple[Any, ...], tuple[int, ...]]

_unpacking = threading.Lock()


class Packed:
    """The pickled functions and arguments of a run's calls; unpickled once in each process that uses it."""

    __slots__ = ("_entries", "blob", "key")

    def __init__(self, key: str, blob: bytes) -> None:
        self.key = key
        self.blob = blob
        self._entries: list[Entry] | None = None

    @classmethod
    def of(cls, key: str, entries: list[Entry]) -> Packed:
        """Pickle ``entries`` (with cloudpickle, so functions of a script travel by value)."""
        import cloudpickle

        return cls(key, cloudpickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))

    def entries(self) -> list[Entry]:
        """The calls, unpickled on first use here and kept while Dask keeps this payload."""
        entries = self._entries
        if entries is None:
            with _unpacking:  # a worker with several threads unpickles it once
                if self._entries is None:
                    self._entries = pickle.loads(self.blob)
                entries = self._entries
        return entries

    def __reduce__(self) -> tuple[Any, ...]:
        return (Packed, (self.key, self.blob))

    def __sizeof__(self) -> int:  # what Dask reports and weighs when it moves the payload
        return len(self.blob) + 64

    def __dask_tokenize__(self) -> str:  # the key is unique: no need to hash the blob
        return self.key

    def __repr__(self) -> str:
        return f"<Packed: {self.key}, {len(self.blob)} bytes>"


def call_packed(packed: Packed, index: int, *futures: Any) -> Any:
    """Run call ``index`` of ``packed``, its futures' values (computed by Dask) in their places."""
    fn, args, slots = packed.entries()[index]
    if not slots:
        return fn(*args)
    filled = list(args)
    for position, value in zip(slots, futures, strict=True):
        filled[position] = value
    return fn(*filled)


def _payload(value: Packed) -> Packed:
    return value


def packed_graph(
    payload_key: str,
    calls: Iterable[tuple[str, Callable[..., Any], tuple[Any, ...]]],
    holds_future: Callable[[Any], bool],
    as_graph_arg: Callable[[Any], Any],
) -> dict[str, Any]:
    """The Dask graph of ``calls`` (``(key, fn, args)``) in the packed form, the payload included.

    ``holds_future(arg)`` says whether an argument is or contains a future (it then
    stays in the graph, as ``as_graph_arg(arg)``, for Dask to resolve).
    """
    entries: list[Entry] = []
    graph: dict[str, Any] = {}
    for index, (key, fn, args) in enumerate(calls):
        slots: list[int] = []
        futures: list[Any] = []
        kept: list[Any] = list(args)
        for position, arg in enumerate(args):
            if holds_future(arg):
                slots.append(position)
                futures.append(as_graph_arg(arg))
                kept[position] = None
        entries.append((fn, tuple(kept), tuple(slots)))
        graph[key] = (call_packed, payload_key, index, *futures)
    graph[payload_key] = (_payload, Packed.of(payload_key, entries))
    return graph
