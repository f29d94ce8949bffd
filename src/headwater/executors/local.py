"""LocalExecutor: runs each task in this process, one after another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from headwater.executors.base import Executor


class LocalExecutor(Executor):
    """Runs tasks in order in this process. ``submit`` returns the result itself.

    The simplest and cheapest executor: no threads, no pickling. Since a
    submitted call has run by the time ``submit`` returns, ``wait`` gives back
    what it is given.
    """

    def __init__(self) -> None:
        self._record()

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def wait(self, futures: Any) -> Any:
        return futures
