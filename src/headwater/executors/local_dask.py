"""LocalDaskExecutor: Dask's local scheduler, with threads or processes, no cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from headwater.executors._graph import delayed_call
from headwater.executors.base import Executor

_SCHEDULERS = ("threads", "processes", "synchronous")


class LocalDaskExecutor(Executor):
    """Runs independent tasks in parallel with Dask's local scheduler.

    Args:
        scheduler: ``"threads"`` (default), ``"processes"`` or ``"synchronous"``.
        num_workers: threads or processes to use; default the machine's core count.
    """

    def __init__(self, scheduler: str = "threads", num_workers: int | None = None) -> None:
        if scheduler not in _SCHEDULERS:
            raise ValueError(
                f"LocalDaskExecutor scheduler must be one of {', '.join(_SCHEDULERS)}, "
                f"not {scheduler!r}"
            )
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(f"LocalDaskExecutor num_workers must be a positive int, not {num_workers!r}")
        self.scheduler = scheduler
        self.num_workers = num_workers
        self._record(scheduler=scheduler, num_workers=num_workers)

    def __repr__(self) -> str:
        return f"<LocalDaskExecutor: {self.scheduler}, {self.num_workers or 'all cores'}>"

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        return delayed_call(fn, args, kwargs, key)

    def wait(self, futures: Any) -> Any:
        import dask

        options: dict[str, Any] = {"scheduler": self.scheduler}
        if self.num_workers is not None:
            options["num_workers"] = self.num_workers
        (result,) = dask.compute(futures, **options)
        return result
