"""LocalDaskExecutor: Dask's local scheduler, with threads or processes, no cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from headwater.executors._graph import GraphBuilder
from headwater.executors.base import Executor

#: Dask's names for its local schedulers (any case) → the one this executor reports.
SCHEDULERS = {
    "threads": "threads",
    "threading": "threads",
    "processes": "processes",
    "multiprocessing": "processes",
    "synchronous": "synchronous",
    "sync": "synchronous",
    "single-threaded": "synchronous",
}


class LocalDaskExecutor(Executor):
    """Runs independent tasks in parallel with Dask's local scheduler.

    Args:
        scheduler: ``"threads"`` (default), ``"processes"`` or ``"synchronous"``, or any
            other name Dask gives these (``"threading"``, ``"multiprocessing"``, ``"sync"``,
            ``"single-threaded"``), in any case.
        num_workers: threads or processes to use; default the machine's core count.
    """

    dependencies = ("dask",)

    def __init__(self, scheduler: str = "threads", num_workers: int | None = None) -> None:
        name = SCHEDULERS.get(scheduler.lower()) if isinstance(scheduler, str) else None
        if name is None:
            raise ValueError(
                f"LocalDaskExecutor scheduler must be one of {', '.join(SCHEDULERS)} (any case), "
                f"not {scheduler!r}"
            )
        scheduler = name
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
        ):
            raise ValueError(f"LocalDaskExecutor num_workers must be a positive int, not {num_workers!r}")
        self.scheduler = scheduler
        self.num_workers = num_workers
        self._record(scheduler=scheduler, num_workers=num_workers)
        self._builder = GraphBuilder()

    @contextmanager
    def start(self) -> Iterator[None]:
        self._builder = GraphBuilder()
        try:
            yield
        finally:
            self._builder = GraphBuilder()

    @property
    def crosses_processes(self) -> bool:  # type: ignore[override]
        return self.scheduler == "processes"

    def __repr__(self) -> str:
        return f"<LocalDaskExecutor: {self.scheduler}, {self.num_workers or 'all cores'}>"

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        return self._builder.submit(fn, args, kwargs, key)

    def wait(self, futures: Any) -> Any:
        return self._builder.wait(futures, self._compute)

    def _compute(self, graph: dict[str, Any], keys: list[str]) -> list[Any]:
        if self.scheduler == "synchronous":
            from dask.local import get_sync

            return list(get_sync(graph, keys))
        if self.scheduler == "threads":
            from dask.threaded import get

            return list(get(graph, keys, num_workers=self.num_workers))
        from dask.multiprocessing import get as get_processes

        # chunksize=1: Dask's default batches up to 6 ready tasks into one process,
        # which would run a small flow's independent tasks one after another
        return list(get_processes(graph, keys, num_workers=self.num_workers, chunksize=1))
