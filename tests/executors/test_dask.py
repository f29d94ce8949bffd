"""DaskExecutor against real Dask: temporary clusters, a LocalCluster, and separate
``dask scheduler`` / ``dask worker`` processes."""

from __future__ import annotations

import logging
import os
import time
from typing import ClassVar

import distributed
import psutil
import pytest

from headwater import Flow
from headwater.core.state import Failed, Success
from headwater.executors import DaskExecutor

from . import tasks as T
from .contract import ExecutorContract
from .tasks import accepts_connections, by_slug, free_port

SMALL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
# one worker thread in this process, but a scheduler listening on TCP (quick to start)
THREADED_TCP_CLUSTER = {"n_workers": 1, "processes": False, "protocol": "tcp", "dashboard_address": ":0"}


class TestDaskExecutor(ExecutorContract):
    """On a real LocalCluster of 2 worker processes (one thread each)."""

    def make_executor(self, request):
        return DaskExecutor(address=request.getfixturevalue("dask_cluster").scheduler_address)


def _where_flow() -> Flow:
    with Flow("where") as flow:
        T.dask_scheduler_address()
        T.number(42)
    return flow


def _wait_gone(pids: set[int], seconds: float = 10) -> set[int]:
    """The pids still alive after waiting up to ``seconds`` for them to exit."""
    deadline = time.monotonic() + seconds
    alive = {p for p in pids if psutil.pid_exists(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {p for p in alive if psutil.pid_exists(p)}
    return alive


# -- a temporary cluster ---------------------------------------------------------


def test_without_address_starts_a_local_cluster_and_closes_it_afterwards():
    executor = DaskExecutor(cluster_kwargs=SMALL_CLUSTER)

    state = _where_flow().run(executor=executor)

    assert isinstance(state, Success), state
    ran = by_slug(state)["dask_scheduler_address-1"].result
    assert ran["pid"] != os.getpid()  # a worker process of the temporary cluster
    assert by_slug(state)["number-1"].result == 42
    # closed afterwards: the scheduler no longer listens, the worker process is gone
    assert not accepts_connections(ran["scheduler"])
    assert _wait_gone({ran["pid"]}) == set()
    assert executor.client is None


def test_each_run_gets_a_new_temporary_cluster():
    executor = DaskExecutor(cluster_kwargs=THREADED_TCP_CLUSTER)

    first = by_slug(_where_flow().run(executor=executor))["dask_scheduler_address-1"].result
    second = by_slug(_where_flow().run(executor=executor))["dask_scheduler_address-1"].result

    assert first["scheduler"] != second["scheduler"]
    assert not accepts_connections(first["scheduler"])
    assert not accepts_connections(second["scheduler"])


def test_cluster_class_by_import_path():
    executor = DaskExecutor(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 1, "processes": False, "dashboard_address": ":0"},
    )

    state = _where_flow().run(executor=executor)

    assert isinstance(state, Success), state
    # processes=False: the worker is a thread of this process, so the kwargs reached the class
    assert by_slug(state)["dask_scheduler_address-1"].result["pid"] == os.getpid()


class RecordingCluster(distributed.LocalCluster):
    """A real LocalCluster that remembers how it was made adaptive."""

    adapt_calls: ClassVar[list[dict]] = []

    def adapt(self, **kwargs):
        type(self).adapt_calls.append(kwargs)
        return super().adapt(**kwargs)


@pytest.mark.timeout(60)
def test_adapt_kwargs_make_the_cluster_adaptive():
    RecordingCluster.adapt_calls.clear()
    executor = DaskExecutor(
        cluster_class=RecordingCluster,
        # no workers at the start: only adaptive scaling can run the tasks
        cluster_kwargs={"n_workers": 0, "processes": False, "dashboard_address": ":0"},
        adapt_kwargs={"minimum": 1, "maximum": 2},
    )

    state = _where_flow().run(executor=executor)

    assert isinstance(state, Success), state
    assert RecordingCluster.adapt_calls == [{"minimum": 1, "maximum": 2}]


def test_no_adapt_without_adapt_kwargs():
    RecordingCluster.adapt_calls.clear()
    executor = DaskExecutor(
        cluster_class=RecordingCluster,
        cluster_kwargs={"n_workers": 1, "processes": False, "dashboard_address": ":0"},
    )

    assert _where_flow().run(executor=executor).is_successful()
    assert RecordingCluster.adapt_calls == []


class ClientRecordingExecutor(DaskExecutor):
    """A real DaskExecutor that notes the id of the client each run used."""

    client_ids: ClassVar[list[str]] = []

    def wait(self, futures):
        type(self).client_ids.append(self.client.id)
        return super().wait(futures)


def test_client_kwargs_reach_the_client():
    ClientRecordingExecutor.client_ids.clear()
    executor = ClientRecordingExecutor(
        cluster_kwargs={"n_workers": 1, "processes": False, "dashboard_address": ":0"},
        client_kwargs={"name": "headwater-test-client"},
    )

    assert _where_flow().run(executor=executor).is_successful()
    (client_id,) = ClientRecordingExecutor.client_ids
    assert "headwater-test-client" in client_id


@pytest.mark.parametrize(("debug", "level"), [(False, logging.WARNING), (True, logging.INFO)])
def test_debug_decides_whether_dask_logs_are_quietened(debug, level):
    dask_logger = logging.getLogger("distributed")
    before = dask_logger.level
    dask_logger.setLevel(logging.INFO)
    try:
        executor = DaskExecutor(cluster_kwargs=THREADED_TCP_CLUSTER, debug=debug)
        assert _where_flow().run(executor=executor).is_successful()
        assert dask_logger.level == level
    finally:
        dask_logger.setLevel(before)


# -- an existing cluster ---------------------------------------------------------


def test_address_uses_an_existing_local_cluster_and_leaves_it_running(dask_cluster):
    executor = DaskExecutor(address=dask_cluster.scheduler_address)

    first = _where_flow().run(executor=executor)
    second = _where_flow().run(executor=executor)

    for state in (first, second):
        assert isinstance(state, Success), state
        ran = by_slug(state)["dask_scheduler_address-1"].result
        assert ran["scheduler"] == dask_cluster.scheduler_address
        assert ran["pid"] != os.getpid()
    assert accepts_connections(dask_cluster.scheduler_address)
    assert executor.client is None


def test_separate_scheduler_and_worker_processes(dask_scheduler_address):
    executor = DaskExecutor(address=dask_scheduler_address)

    state = T.data_flow().run(parameters={"base": 5}, executor=executor)
    failing = T.failure_flow().run(executor=executor)
    where = by_slug(_where_flow().run(executor=executor))["dask_scheduler_address-1"].result

    assert isinstance(state, Success), state
    assert by_slug(state)["add-2"].result == 8
    assert by_slug(failing)["boom-1"].message == "ValueError: boom: broken on purpose"
    assert where["scheduler"] == dask_scheduler_address
    assert where["pid"] != os.getpid()
    # the scheduler outlives the runs
    assert accepts_connections(dask_scheduler_address)


def test_independent_tasks_overlap_on_separate_worker_process(dask_scheduler_address):
    state = T.parallel_flow(4, 0.4).run(executor=DaskExecutor(address=dask_scheduler_address))

    intervals = [s.result for s in state.result.values()]
    assert T.max_overlap(intervals) == 2  # one worker with 2 threads


def test_unreachable_scheduler_fails_the_flow_run_and_names_the_executor():
    with Flow("unreachable") as flow:
        T.number(1)
    address = f"tcp://127.0.0.1:{free_port()}"

    state = flow.run(executor=DaskExecutor(address=address, client_kwargs={"timeout": "1s"}))

    assert isinstance(state, Failed)
    assert "DaskExecutor" in state.message


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cluster_kwargs": {"n_workers": 1}},
        {"cluster_class": "distributed.LocalCluster"},
        {"adapt_kwargs": {"minimum": 1}},
    ],
)
def test_address_and_temporary_cluster_options_are_exclusive(kwargs):
    with pytest.raises(ValueError, match="either address"):
        DaskExecutor(address="tcp://127.0.0.1:8786", **kwargs)


@pytest.mark.parametrize(
    "path", ["distributed.NoSuchCluster", "no_such_module_hw.Cluster", "LocalCluster"]
)
def test_cluster_class_path_that_does_not_resolve(path):
    with pytest.raises(ValueError, match="cluster_class"):
        DaskExecutor(cluster_class=path)


def test_wait_outside_start_is_an_error():
    executor = DaskExecutor(cluster_kwargs=SMALL_CLUSTER)
    future = executor.submit(T.add.run, 1, 2)
    with pytest.raises(RuntimeError, match="start"):
        executor.wait([future])


def test_spec_rebuilds_an_equal_executor():
    from headwater.executors import executor_from_spec

    executor = DaskExecutor(
        cluster_class=distributed.LocalCluster,
        cluster_kwargs={"n_workers": 1},
        adapt_kwargs={"maximum": 3},
        client_kwargs={"name": "x"},
    )
    spec = executor.serialize()

    assert spec == {
        "kind": "dask",
        "cluster_class": "distributed.deploy.local.LocalCluster",
        "cluster_kwargs": {"n_workers": 1},
        "adapt_kwargs": {"maximum": 3},
        "client_kwargs": {"name": "x"},
    }
    rebuilt = executor_from_spec(spec)
    assert isinstance(rebuilt, DaskExecutor)
    assert rebuilt.cluster_class is distributed.LocalCluster
    assert rebuilt.cluster_kwargs == {"n_workers": 1}
    assert rebuilt.adapt_kwargs == {"maximum": 3}
    assert rebuilt.client_kwargs == {"name": "x"}
    assert DaskExecutor(address="tcp://h:1").serialize() == {"kind": "dask", "address": "tcp://h:1"}
