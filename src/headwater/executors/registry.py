"""Executors by kind: ``"local"``, ``"local-dask"``, ``"dask"`` → lazy import paths.

The one place that maps executor kinds to classes (``headwater.plugins``
is the shape every family shares). :func:`executor_from_spec` rebuilds an executor
from ``Executor.serialize()``'s ``{"kind": ..., ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.executors.base import Executor
from headwater.plugins import Entry, PluginError, Registry

registry: Registry[Executor] = Registry(
    "executor",
    Executor,
    {
        "local": Entry("headwater.executors.local.LocalExecutor"),
        "local-dask": Entry("headwater.executors.local_dask.LocalDaskExecutor", "dask"),
        "dask": Entry("headwater.executors.dask.DaskExecutor", "dask"),
    },
    register_function="headwater.executors.register_executor",
)


def register_executor(kind: str, path: str, extra: str | None = None, clobber: bool = False) -> None:
    """Register an executor class by import path under ``kind`` (for third-party executors)."""
    registry.register(kind, path, extra, clobber)


def get_executor_class(kind: str) -> type[Executor]:
    """The class of ``kind`` (a registered kind or an import path), imported now.

    Raises:
        PluginError: an unknown kind; PluginNotAvailable: its extra isn't installed.
    """
    return registry.get_class(kind)


def executor_from_spec(spec: Mapping[str, Any]) -> Executor:
    """Rebuild an executor from ``Executor.serialize()``'s output.

    Also reads the older ``{"class": import path, "kwargs": {...}}`` form that flow
    versions registered before kinds existed hold.

    Raises:
        PluginError: not a dict with a known kind, or keys the executor doesn't take.
        PluginNotAvailable: the kind's extra isn't installed here.
    """
    if isinstance(spec, Mapping) and "kind" not in spec and "class" in spec:
        from headwater.executors.base import executor_from_path

        kwargs = spec.get("kwargs")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise PluginError(f"executor spec {dict(spec)!r}: 'kwargs' must be a dict")
        return executor_from_path(spec["class"], dict(kwargs or {}))
    return get_executor_class(registry.spec_kind(spec)).from_spec(spec)
