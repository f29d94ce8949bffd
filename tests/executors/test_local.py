"""LocalExecutor: every task in this thread, one after another."""

from __future__ import annotations

import threading

import pytest

from headwater import Flow
from headwater.executors import Executor, LocalExecutor, executor_from_spec

from . import tasks as T
from .contract import ExecutorContract


class TestLocalExecutor(ExecutorContract):
    runs_in, parallel = "here", 1

    def make_executor(self, request):
        return LocalExecutor()


def test_submit_runs_at_once_and_wait_returns_the_results():
    executor = LocalExecutor()
    calls = []

    with executor.start():
        first = executor.submit(lambda: calls.append("a") or 1)
        assert calls == ["a"]  # ran at submit time
        second = executor.submit(lambda x: x + 1, first)
        assert executor.wait([first, second]) == [1, 2]
        assert executor.wait({"x": first}) == {"x": 1}


def test_tasks_run_in_this_thread_in_topological_order():
    order = []

    @T.task
    def note(label):
        order.append(label)
        return label

    with Flow("order") as flow:
        c = note("c")  # added first, runs last
        b = note("b")
        a = note("a")
        c.set_upstream(b)
        b.set_upstream(a)

    with Flow("where") as where:
        T.where()

    assert flow.run(executor=LocalExecutor()).is_successful()
    (state,) = where.run(executor=LocalExecutor()).result.values()
    assert order == ["a", "b", "c"]
    assert state.result["thread"] == threading.get_ident()


def test_spec_and_rebuild():
    spec = LocalExecutor().serialize()
    assert spec == {"kind": "local"}
    assert isinstance(executor_from_spec(spec), LocalExecutor)
    # the older form, which flow versions registered before kinds hold, still loads
    assert isinstance(executor_from_spec({"class": "headwater.executors.local.LocalExecutor", "kwargs": {}}),
                      LocalExecutor)  # fmt: skip


class HalfDoneExecutor(Executor):
    """A real Executor subclass that forgot to implement submit() and wait()."""


class BrokenExecutor(LocalExecutor):
    """An executor whose wait() breaks."""

    def wait(self, futures):
        raise RuntimeError("lost the results")


def test_an_executor_missing_its_abstract_methods_cant_be_made():
    with pytest.raises(TypeError, match="abstract methods submit, wait"):
        HalfDoneExecutor()


def test_an_executor_that_raises_fails_the_flow_run_naming_it():
    with Flow("x") as flow:
        T.number(1)

    state = flow.run(executor=BrokenExecutor())

    assert state.is_failed()
    assert "BrokenExecutor" in state.message and "lost the results" in state.message
