"""RemoteEnvironment: runs the flow in place with an executor named by import path.

Meant for executors that reach elsewhere, e.g. a DaskExecutor with the address
of an existing scheduler; the path and kwargs are JSON, so the spec is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from headwater.environments.base import Environment

if TYPE_CHECKING:
    from headwater.executors.base import Executor


class RemoteEnvironment(Environment):
    """Runs the flow in the flow-run process with ``executor`` built from its import path.

    Args:
        executor: import path of an Executor class, e.g. ``"headwater.executors.DaskExecutor"``;
            default the ``engine.executor`` setting.
        executor_kwargs: its keyword arguments, e.g. ``{"address": "tcp://127.0.0.1:8786"}``.
        labels, on_start, on_exit, metadata: as for :class:`Environment`.

    Raises:
        ValueError: the import path does not resolve, names something that is not an
            Executor, or the kwargs don't fit — at construction, before any run.
    """

    kind = "remote"

    def __init__(
        self,
        executor: str | None = None,
        executor_kwargs: dict[str, Any] | None = None,
        labels: Iterable[str] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        from headwater.executors.base import executor_from_path

        super().__init__(labels=labels, on_start=on_start, on_exit=on_exit, metadata=metadata)
        if executor is not None and not isinstance(executor, str):
            raise TypeError(
                f"RemoteEnvironment executor is an import path string like "
                f"'headwater.executors.DaskExecutor', not {type(executor).__name__}"
            )
        self.executor_path = executor
        self.executor_kwargs = dict(executor_kwargs or {})
        self._executor = executor_from_path(executor, self.executor_kwargs) if executor else None

    @property
    def executor(self) -> Executor | None:
        return self._executor

    def spec_args(self) -> dict[str, Any]:
        return {"executor_path": self.executor_path, "executor_kwargs": self.executor_kwargs}

    @classmethod
    def spec_to_args(cls, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The executor comes back from its import path (``executor_path``); ``executor`` only reports it."""
        args = {k: v for k, v in spec.items() if k not in ("kind", "executor", "executor_path")}
        args["executor"] = spec.get("executor_path")
        return args
