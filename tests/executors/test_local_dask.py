"""LocalDaskExecutor: Dask's local scheduler with threads or processes."""

from __future__ import annotations

import os
import threading

import pytest

from headwater import Flow
from headwater.executors import LocalDaskExecutor, executor_from_path

from . import tasks as T


@pytest.mark.parametrize("scheduler", ["gpu", "Threads", "", None, 3, "distributed"])
def test_bad_scheduler_is_refused_naming_the_choices(scheduler):
    with pytest.raises(ValueError, match="threads, processes") as info:
        LocalDaskExecutor(scheduler=scheduler)
    assert repr(scheduler) in str(info.value)


@pytest.mark.parametrize("num_workers", [0, -1, "2", 1.5, True])
def test_bad_num_workers_is_refused(num_workers):
    with pytest.raises(ValueError, match="num_workers"):
        LocalDaskExecutor(num_workers=num_workers)


def test_defaults_are_threads_on_every_core():
    executor = LocalDaskExecutor()
    assert executor.scheduler == "threads"
    assert executor.num_workers is None
    assert executor.spec() == {
        "class": "headwater.executors.local_dask.LocalDaskExecutor",
        "kwargs": {"scheduler": "threads"},
    }


def test_num_workers_limits_parallelism():
    one = T.parallel_flow(2, 0.3).run(executor=LocalDaskExecutor("threads", num_workers=1))
    two = T.parallel_flow(2, 0.3).run(executor=LocalDaskExecutor("threads", num_workers=2))

    assert T.max_overlap([s.result for s in one.result.values()]) == 1
    assert T.max_overlap([s.result for s in two.result.values()]) == 2


def test_default_num_workers_runs_tasks_in_parallel():
    state = T.parallel_flow(2, 0.3).run(executor=LocalDaskExecutor())

    assert T.max_overlap([s.result for s in state.result.values()]) == 2


def test_processes_run_in_other_processes():
    with Flow("where") as flow:
        T.where()
        T.where()

    state = flow.run(executor=LocalDaskExecutor("processes", num_workers=2))

    pids = {s.result["pid"] for s in state.result.values()}
    assert os.getpid() not in pids


def test_synchronous_scheduler_runs_in_this_thread():
    with Flow("where") as flow:
        T.where()
    data = T.data_flow()

    (state,) = flow.run(executor=LocalDaskExecutor("synchronous")).result.values()
    results = data.run(executor=LocalDaskExecutor("synchronous"))

    assert state.result["thread"] == threading.get_ident()
    assert T.by_slug(results)["add-2"].result == 13


def test_spec_round_trips():
    executor = LocalDaskExecutor("processes", num_workers=3)
    spec = executor.spec()

    rebuilt = executor_from_path(spec["class"], spec["kwargs"])

    assert spec["kwargs"] == {"scheduler": "processes", "num_workers": 3}
    assert isinstance(rebuilt, LocalDaskExecutor)
    assert (rebuilt.scheduler, rebuilt.num_workers) == ("processes", 3)
