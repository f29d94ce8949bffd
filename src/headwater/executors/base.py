"""The Executor contract: ``start``, ``submit``, ``wait``. One backend per module.

The flow runner (``headwater.engine.flow_runner``) submits every task in run
order, passing the futures of upstream tasks as arguments, then waits on all
of them. An executor resolves those futures before calling the function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Executor:
    """Base executor. Subclasses implement :meth:`submit` and :meth:`wait`.

    Constructor arguments are recorded by :meth:`_record` so :meth:`spec` can
    describe the executor as JSON (an import path plus kwargs).
    """

    _spec_kwargs: dict[str, Any]
    #: whether tasks run in other processes (their results must be picklable).
    crosses_processes: bool = False
    #: modules this executor imports when it runs; a flow image's healthcheck imports them.
    dependencies: tuple[str, ...] = ()

    def _record(self, **kwargs: Any) -> None:
        self._spec_kwargs = {k: v for k, v in kwargs.items() if v is not None}

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    # -- hooks for subclasses ------------------------------------------------

    @contextmanager
    def start(self) -> Iterator[None]:
        """Set up what the executor needs for one flow run and tear it down after."""
        yield

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        """Schedule ``fn(*args, **kwargs)``; futures in ``args`` are resolved first.

        ``key`` names the call for the executor's own dashboards and logs.
        Returns a future (or, for in-process executors, the result itself).
        """
        raise NotImplementedError

    def wait(self, futures: Any) -> Any:
        """The results of ``futures`` (a future or a list/dict of them), in the same shape."""
        raise NotImplementedError

    # -- machinery -------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """JSON description: ``{"class": import path, "kwargs": {...}}``."""
        cls = type(self)
        return {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "kwargs": dict(getattr(self, "_spec_kwargs", {})),
        }


_SHORT_PATHS = {
    "headwater.executors.LocalExecutor": "headwater.executors.local.LocalExecutor",
    "headwater.executors.LocalDaskExecutor": "headwater.executors.local_dask.LocalDaskExecutor",
    "headwater.executors.DaskExecutor": "headwater.executors.dask.DaskExecutor",
}


def executor_from_path(path: str, kwargs: dict[str, Any] | None = None) -> Executor:
    """Build an executor from an import path (``"pkg.mod.Class"``) and kwargs.

    Raises:
        ValueError: the path does not resolve, or names something that is not an Executor.
    """
    if not isinstance(path, str) or "." not in path:
        raise ValueError(
            f"executor import path {path!r} is not a dotted path like "
            "'headwater.executors.DaskExecutor'"
        )
    module_name, _, attr = _SHORT_PATHS.get(path, path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise ValueError(
            f"executor import path {path!r} does not resolve: {exc}. Is the module installed "
            "(DaskExecutor needs `pip install headwater[dask]`)?"
        ) from exc
    except AttributeError:
        raise ValueError(
            f"executor import path {path!r} does not resolve: module {module_name!r} has no "
            f"attribute {attr!r}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Executor)) or cls is Executor:
        raise ValueError(
            f"executor import path {path!r} names {cls!r}, which is not a concrete headwater Executor "
            "(e.g. headwater.executors.LocalExecutor)"
        )
    try:
        return cls(**(kwargs or {}))
    except TypeError as exc:
        raise ValueError(f"executor {path!r} does not take these kwargs {kwargs!r}: {exc}") from exc
