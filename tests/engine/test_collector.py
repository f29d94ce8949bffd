"""The garbage collector during a run (engine/collector.py): the built flow is frozen while it
runs and unfrozen after, however the run ends; cycles made by tasks are still collected."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from headwater import Flow, task
from headwater.engine.collector import spared
from headwater.executors import LocalDaskExecutor, LocalExecutor
from headwater.executors.base import Executor


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()  # nothing frozen by an earlier test of this worker
    yield
    gc.unfreeze()


class Node:
    """An object in a reference cycle with itself; counts how many are alive."""

    alive = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        with Node.lock:
            Node.alive += 1
        self.me = self
        self.payload = bytearray(1024)

    def __del__(self) -> None:
        with Node.lock:
            Node.alive -= 1


def test_frozen_while_it_runs_and_unfrozen_after() -> None:
    seen: list[int] = []

    @task
    def look() -> None:
        seen.append(gc.get_freeze_count())

    with Flow("look") as flow:
        look()
    assert gc.get_freeze_count() == 0
    assert flow.run(executor=LocalExecutor()).is_successful()
    assert seen and seen[0] > 0  # the flow (and what else lived) was frozen while the task ran
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


def test_unfrozen_after_a_failed_run_and_after_an_executor_failure() -> None:
    @task
    def boom() -> None:
        raise ValueError("no")

    with Flow("fails") as flow:
        boom()
    assert flow.run(executor=LocalExecutor()).is_failed()
    assert gc.get_freeze_count() == 0

    class Broken(Executor):
        def submit(self, fn: Any, *args: Any, key: str | None = None, **kwargs: Any) -> Any:
            raise RuntimeError("the executor broke")

        def wait(self, futures: Any) -> Any:
            return futures

    state = flow.run(executor=Broken())
    assert state.is_failed() and "the executor broke" in (state.message or "")
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


def test_unfrozen_when_the_run_raises() -> None:
    with Flow("bad", executor=None) as flow:
        task(lambda: 1)()
    with pytest.raises(Exception, match="no parameter"):
        flow.run(parameters={"nope": 1}, executor=LocalExecutor())
    assert gc.get_freeze_count() == 0


def test_cycles_made_by_tasks_are_collected_during_the_run() -> None:
    """20,000 tasks each leave a 1 KB object in a reference cycle behind: they are collected as
    the run goes on, so no more than a few thousand are ever alive at once (not all 20,000)."""
    highest = [0]

    @task
    def litter() -> None:
        Node()
        highest[0] = max(highest[0], Node.alive)

    with Flow("litter") as flow:
        for _ in range(20_000):
            litter()
    gc.collect()
    before = Node.alive
    assert flow.run(executor=LocalExecutor()).is_successful()
    assert highest[0] - before < 5_000
    gc.collect()
    assert Node.alive == before


def test_an_applications_own_freeze_is_kept() -> None:
    kept = [object() for _ in range(10)]
    gc.freeze()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    with Flow("after a freeze") as flow:
        task(lambda: 1)()
    assert flow.run(executor=LocalExecutor()).is_successful()
    assert gc.get_freeze_count() > frozen // 2  # not unfrozen by the run (a frozen object freed since leaves it)
    del kept


def test_nested_and_concurrent_runs_unfreeze_once_the_last_ends() -> None:
    inner_seen: list[int] = []

    @task
    def inner_step() -> None:
        inner_seen.append(gc.get_freeze_count())

    with Flow("inner") as inner:
        inner_step()

    @task
    def outer_step() -> int:
        assert inner.run(executor=LocalExecutor()).is_successful()
        return gc.get_freeze_count()  # still frozen: the outer run goes on

    with Flow("outer") as outer:
        for _ in range(4):
            outer_step()
    state = outer.run(executor=LocalDaskExecutor(scheduler="threads"))
    assert state.is_successful()
    assert all(s.result > 0 for s in state.result.values())
    assert inner_seen and all(n > 0 for n in inner_seen)
    assert gc.get_freeze_count() == 0


def test_spared_unfreezes_when_its_block_raises() -> None:
    with pytest.raises(KeyError), spared():
        assert gc.get_freeze_count() > 0
        raise KeyError("x")
    assert gc.get_freeze_count() == 0
