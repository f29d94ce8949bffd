"""Executors: where a flow's tasks run. Dask-based ones import Dask only when used.

The contract is ``base.py`` (an ABC: ``start``, ``submit``, ``wait``); kinds and
specs are ``registry.py``; one backend per module (``local.py``, ``local_dask.py``,
``dask.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.executors.base import Executor, executor_from_path
from headwater.executors.local import LocalExecutor
from headwater.executors.registry import executor_from_spec, get_executor_class, register_executor
from headwater.executors.registry import registry as _kinds

if TYPE_CHECKING:
    from headwater.executors.dask import DaskExecutor
    from headwater.executors.local_dask import LocalDaskExecutor

__all__ = [
    "DaskExecutor",
    "Executor",
    "LocalDaskExecutor",
    "LocalExecutor",
    "executor_from_path",
    "executor_from_spec",
    "get_executor_class",
    "register_executor",
]


def __getattr__(name: str) -> Any:
    """``DaskExecutor``, ``LocalDaskExecutor``: imported on first use, through the registry."""
    kind = _kinds.kind_of_class_name(name)
    if kind is None:
        raise AttributeError(f"module 'headwater.executors' has no attribute {name!r}")
    return _kinds.get_class(kind)
