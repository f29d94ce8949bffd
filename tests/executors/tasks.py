"""Tasks, flows and helpers for the executor tests.

They live in a module of their own so Dask worker processes unpickle them by
reference (the workers get this process's ``sys.path``). Tasks report where
and when they ran in their results, since worker processes share no memory
with the test.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from headwater import Flow, Parameter, task
from headwater.core import signals
from headwater.core.triggers import always_run
from headwater.engine import StateHandler
from headwater.engine.context import current


@task
def number(n: int) -> int:
    return n


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(values: Any) -> int:
    return sum(values)


@task
def describe(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(mapping.items())


@task(nout=2)
def divmod_task(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)


@task
def boom() -> None:
    raise ValueError("boom: broken on purpose")


@task
def cleanup() -> str:
    return "cleaned"


@task(max_retries=2, retry_delay=0.1)
def flaky(succeed_on: int) -> int:
    """Fails until attempt ``succeed_on``; returns the attempt that succeeded."""
    ctx = current()
    assert ctx is not None
    if ctx.attempt < succeed_on:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@task(max_retries=3)
def gives_up() -> None:
    raise signals.FAIL("no point retrying")


@task(timeout=0.3)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@task(timeout=0.3, max_retries=1)
def slow_first_time() -> int:
    """Runs past its timeout on attempt 1, returns at once on attempt 2."""
    ctx = current()
    assert ctx is not None
    if ctx.attempt == 1:
        time.sleep(1.0)
    return ctx.attempt


@task
def skipper() -> None:
    raise signals.SKIP("nothing to do today")


@task
def interval(seconds: float) -> tuple[float, float]:
    """Sleeps; returns the wall-clock (start, end) it ran."""
    start = time.time()
    time.sleep(seconds)
    return (start, time.time())


@task
def where() -> dict[str, Any]:
    return {"pid": os.getpid(), "thread": threading.get_ident(), "main": threading.main_thread().ident}


@task
def dask_scheduler_address() -> dict[str, Any]:
    """The scheduler of the Dask worker running this task, and the worker's pid."""
    import distributed

    return {"scheduler": distributed.get_worker().scheduler.address, "pid": os.getpid()}


class FileStateHandler(StateHandler):
    """Appends each state change to a file: handlers run in the workers, files are shared."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, line: str) -> None:
        with open(self.path, "a") as f:
            f.write(line + "\n")

    def on_task_state(self, context: Any, task: Any, state: Any) -> None:
        self._write(f"task {task.slug} {state.name} {context.flow_run_name}")

    def on_flow_state(self, context: Any, state: Any) -> None:
        self._write(f"flow {state.name} {context.flow_run_name}")


# -- flows ---------------------------------------------------------------------


def data_flow() -> Flow:
    """Results, constants, parameters and collections flowing downstream."""
    with Flow("data") as flow:
        base = Parameter("base", default=10)
        one = number(1)
        two = number(2)
        three = add(one, two)
        add(three, y=base)  # slug add-2
        total([one, two, three, 4])
        describe({"one": one, "sum": three, "const": "c"})
        q, r = divmod_task(17, two)
        add(q, r)  # slug add-3
    return flow


def failure_flow() -> Flow:
    """boom fails; its downstream is TriggerFailed; an always_run clean-up still runs."""
    with Flow("failure") as flow:
        broken = boom()
        after = add(broken, 1)
        cleanup(upstream_tasks=[broken, after], task_args={"trigger": always_run})
    return flow


def parallel_flow(n: int, seconds: float) -> Flow:
    """``n`` independent tasks that each sleep ``seconds``."""
    with Flow("parallel") as flow:
        for _ in range(n):
            interval(seconds)
    return flow


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals running at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts_connections(address: str) -> bool:
    """Whether something listens at ``tcp://host:port``."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def by_slug(state: Any) -> dict[str, Any]:
    """A finished flow state's task states, by task slug."""
    return {t.slug: s for t, s in state.result.items()}
