"""Executors: where a flow's tasks run. Dask-based ones import Dask only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.executors.base import Executor, executor_from_path
from headwater.executors.local import LocalExecutor

if TYPE_CHECKING:
    from headwater.executors.dask import DaskExecutor
    from headwater.executors.local_dask import LocalDaskExecutor

__all__ = ["DaskExecutor", "Executor", "LocalDaskExecutor", "LocalExecutor", "executor_from_path"]


def __getattr__(name: str) -> Any:
    if name == "DaskExecutor":
        from headwater.executors.dask import DaskExecutor

        return DaskExecutor
    if name == "LocalDaskExecutor":
        from headwater.executors.local_dask import LocalDaskExecutor

        return LocalDaskExecutor
    raise AttributeError(f"module 'headwater.executors' has no attribute {name!r}")
