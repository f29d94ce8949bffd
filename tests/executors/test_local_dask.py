"""LocalDaskExecutor: Dask's local scheduler with threads or processes."""

from __future__ import annotations

import os
import threading

import pytest

from headwater import Flow
from headwater.executors import LocalDaskExecutor, executor_from_spec

from . import tasks as T
from .contract import ExecutorContract


class TestLocalDaskExecutorThreads(ExecutorContract):
    runs_in = "thread"

    def make_executor(self, request):
        return LocalDaskExecutor(scheduler="threads", num_workers=2)


class TestLocalDaskExecutorProcesses(ExecutorContract):
    def make_executor(self, request):
        return LocalDaskExecutor(scheduler="processes", num_workers=2)


class TestLocalDaskExecutorSynchronous(ExecutorContract):
    runs_in, parallel = "here", 1

    def make_executor(self, request):
        return LocalDaskExecutor(scheduler="synchronous")


@pytest.mark.parametrize("scheduler", ["gpu", "", None, 3, "distributed", "thread"])
def test_bad_scheduler_is_refused_naming_the_choices(scheduler):
    with pytest.raises(ValueError, match="threads, threading, processes") as info:
        LocalDaskExecutor(scheduler=scheduler)
    assert repr(scheduler) in str(info.value)


@pytest.mark.parametrize(
    ("given", "scheduler"),
    [
        ("threads", "threads"), ("Threads", "threads"), ("threading", "threads"), ("THREADING", "threads"),
        ("processes", "processes"), ("multiprocessing", "processes"), ("Multiprocessing", "processes"),
        ("synchronous", "synchronous"), ("sync", "synchronous"), ("single-threaded", "synchronous"),
        ("Single-Threaded", "synchronous"),
    ],
)  # fmt: skip
def test_dasks_own_scheduler_names_are_accepted_in_any_case(given, scheduler):
    executor = LocalDaskExecutor(scheduler=given)

    assert executor.scheduler == scheduler
    assert executor.serialize() == {"kind": "local-dask", "scheduler": scheduler}


@pytest.mark.parametrize("num_workers", [0, -1, "2", 1.5, True])
def test_bad_num_workers_is_refused(num_workers):
    with pytest.raises(ValueError, match="num_workers"):
        LocalDaskExecutor(num_workers=num_workers)


def test_defaults_are_threads_on_every_core():
    executor = LocalDaskExecutor()
    assert executor.scheduler == "threads"
    assert executor.num_workers is None
    assert executor.serialize() == {"kind": "local-dask", "scheduler": "threads"}


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
    spec = executor.serialize()

    rebuilt = executor_from_spec(spec)

    assert spec == {"kind": "local-dask", "scheduler": "processes", "num_workers": 3}
    assert isinstance(rebuilt, LocalDaskExecutor)
    assert (rebuilt.scheduler, rebuilt.num_workers) == ("processes", 3)
