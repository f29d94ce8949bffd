"""Runs whose tasks cross process boundaries: unpicklable results, worker logging, executor failure."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from headwater import Flow, task
from headwater.executors import Executor, LocalDaskExecutor, LocalExecutor


class LockHolder(Exception):
    def __init__(self) -> None:
        super().__init__("holding a lock")
        self.lock = threading.Lock()


@task
def returns_lock() -> Any:
    return threading.Lock()


@task
def raises_lock_holder() -> None:
    raise LockHolder()


@task
def plain() -> int:
    return 7


@task
def chatty() -> int:
    import logging

    logging.getLogger("headwater.user").warning("hello from the worker")
    return 1


def lock_flow() -> tuple[Flow, Any, Any, Any]:
    with Flow("locks") as flow:
        a, b, c = returns_lock(), raises_lock_holder(), plain()
    return flow, a, b, c


def test_unpicklable_result_and_exception_fail_only_their_task() -> None:
    flow, a, b, c = lock_flow()
    state = flow.run(executor=LocalDaskExecutor(scheduler="processes", num_workers=2))
    assert isinstance(state.result, dict)
    assert state.result[c].is_successful() and state.result[c].result == 7
    assert state.result[a].is_failed()
    assert "returned a value (lock) that can't be sent back from the worker process" in state.result[a].message
    assert "in-process executor" in state.result[a].message
    assert state.result[b].is_failed()
    assert "raised an exception (LockHolder)" in state.result[b].message
    assert "LockHolder: holding a lock" in state.result[b].message
    assert "LockHolder" in (state.result[b].traceback or "")


def test_in_process_executors_keep_unpicklable_results() -> None:
    flow, a, _, _ = lock_flow()
    for executor in (LocalExecutor(), LocalDaskExecutor(scheduler="threads")):
        state = flow.run(executor=executor)
        assert state.result[a].is_successful(), executor


def test_worker_processes_log_with_run_and_task_context(capfd: pytest.CaptureFixture[str]) -> None:
    with Flow("logs") as flow:
        chatty()
    flow.run(executor=LocalDaskExecutor(scheduler="processes", num_workers=1), run_name="worker-run")
    err = capfd.readouterr().err
    line = next(ln for ln in err.splitlines() if "hello from the worker" in ln)
    assert "worker-run" in line and "[chatty-1]" in line


class BrokenExecutor(Executor):
    """A real executor whose infrastructure fails at wait time."""

    @contextmanager
    def start(self) -> Iterator[None]:
        yield

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        return None

    def wait(self, futures: Any) -> Any:
        raise ConnectionError("scheduler went away")


def test_executor_failure_fails_the_run_and_keeps_every_task() -> None:
    with Flow("broken") as flow:
        p = plain()
    state = flow.run(executor=BrokenExecutor())
    assert state.is_failed()
    assert "BrokenExecutor failed" in state.message and "scheduler went away" in state.message
    assert state.result[p].is_pending()
    assert "executor failed" in state.result[p].message
