"""DaskExecutor: runs tasks on a Dask distributed cluster, existing or temporary."""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from headwater.executors._graph import GraphBuilder
from headwater.executors.base import Executor

logger = logging.getLogger("headwater.executors.dask")


def _import_cluster_class(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"DaskExecutor cluster_class {path!r} does not resolve: {exc}") from exc


#: from how many calls a wait sends the packed form (``_packed.py``). Every packed call
#: depends on the payload, and Dask first places a task that is not one of a large group
#: of like tasks (root-ish) only on workers that hold one of its dependencies: a few slow
#: tasks would queue on the one worker holding the payload until work stealing moves
#: them. Below this size the plain form costs little anyway.
PACK_FROM = 100


def _untokenized(graph: dict[str, Any]) -> Any:
    """``graph`` as the expression ``Client.get`` makes of a dict, named by a random token.

    Given a dict, ``Client.get`` names its expression by a deterministic token of the
    whole graph, which hashes every task by pickling it (≈ 30 µs per task on this
    project's machine): wasted, since every key of a headwater graph is unique to
    its run anyway. On a Dask without this class, the dict goes as it is.
    """
    try:
        from dask._expr import LLGExpr
    except ImportError:  # pragma: no cover - another Dask version
        return graph
    return LLGExpr(graph, _determ_token=uuid.uuid4().hex)


class DaskExecutor(Executor):
    """Runs tasks on Dask distributed (in worker processes, even on one machine).

    Args:
        address: a scheduler to connect to (``"tcp://127.0.0.1:8786"``). Without
            one, a temporary cluster is started for the run and closed after.
        cluster_class: the temporary cluster's class or its import path;
            default ``distributed.LocalCluster``.
        cluster_kwargs: arguments for ``cluster_class``.
        adapt_kwargs: when given, ``cluster.adapt(**adapt_kwargs)`` is called.
        client_kwargs: arguments for ``distributed.Client``.
        debug: keep Dask's own logs at their normal level (quietened otherwise).
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        debug: bool = False,
    ) -> None:
        if address is not None and (cluster_class is not None or cluster_kwargs or adapt_kwargs):
            raise ValueError(
                "DaskExecutor: give either address (an existing scheduler) or "
                "cluster_class/cluster_kwargs/adapt_kwargs (a temporary cluster), not both"
            )
        if isinstance(cluster_class, str):
            cluster_class = _import_cluster_class(cluster_class)
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.debug = debug
        self.client: Any = None
        self._builder = GraphBuilder(PACK_FROM)
        path = None
        if cluster_class is not None:
            path = f"{cluster_class.__module__}.{getattr(cluster_class, '__qualname__', '')}"
        self._record(
            address=address,
            cluster_class=path,
            cluster_kwargs=self.cluster_kwargs or None,
            adapt_kwargs=self.adapt_kwargs or None,
            client_kwargs=self.client_kwargs or None,
            debug=debug or None,
        )

    crosses_processes = True
    dependencies = ("distributed",)

    def __repr__(self) -> str:
        return f"<DaskExecutor: {self.address or 'temporary cluster'}>"

    @contextmanager
    def start(self) -> Iterator[None]:
        self._builder = GraphBuilder(PACK_FROM)
        try:
            with self._connect():
                yield
        finally:
            self._builder = GraphBuilder(PACK_FROM)

    @contextmanager
    def _connect(self) -> Iterator[None]:
        from distributed import Client

        if not self.debug:
            for name in ("distributed", "distributed.scheduler", "distributed.worker"):
                logging.getLogger(name).setLevel(logging.WARNING)
        if self.address is not None:
            with Client(self.address, **self.client_kwargs) as client:
                self.client = client
                try:
                    yield
                finally:
                    self.client = None
            return
        cluster_class = self.cluster_class
        if cluster_class is None:
            from distributed import LocalCluster

            cluster_class = LocalCluster
        with cluster_class(**self.cluster_kwargs) as cluster:
            if self.adapt_kwargs:
                cluster.adapt(**self.adapt_kwargs)
            logger.info("DaskExecutor started a temporary cluster: %s", cluster)
            with Client(cluster, **self.client_kwargs) as client:
                self.client = client
                try:
                    yield
                finally:
                    self.client = None

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        return self._builder.submit(fn, args, kwargs, key)

    def wait(self, futures: Any) -> Any:
        return self._builder.wait(futures, self._compute)

    def _compute(self, graph: dict[str, Any], keys: list[str]) -> list[Any]:
        if self.client is None:
            raise RuntimeError("DaskExecutor.wait was called outside `with executor.start():`")
        return list(self.client.get(_untokenized(graph), keys, sync=True))

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the executor's arguments, not its live client or the calls of a run."""
        state = dict(self.__dict__)
        state["client"] = None
        state["_builder"] = GraphBuilder(PACK_FROM)
        return state
