"""The executor contract: the same flow behaviour on every executor.

Each test runs once per executor kind (``executor`` fixture in conftest.py):
LocalExecutor, LocalDaskExecutor with threads and with processes, and
DaskExecutor on a real LocalCluster.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from headwater import Flow
from headwater.core.state import Failed, Skipped, Success, TimedOut, TriggerFailed

from . import tasks as T
from .tasks import by_slug


def test_results_constants_parameters_and_collections_flow_downstream(executor):
    flow = T.data_flow()

    state = flow.run(parameters={"base": 100}, executor=executor)

    assert isinstance(state, Success), state
    results = {slug: s.result for slug, s in by_slug(state).items()}
    assert results["add-1"] == 3
    assert results["add-2"] == 103  # the parameter's given value, not its default
    assert results["total-1"] == 1 + 2 + 3 + 4
    assert results["describe-1"] == [("const", "c"), ("one", 1), ("sum", 3)]
    assert results["add-3"] == 8 + 1  # divmod(17, 2) unpacked into two tasks
    assert all(isinstance(s, Success) for s in state.result.values())


def test_parameter_default_is_used_when_not_given(executor):
    state = T.data_flow().run(executor=executor)

    assert by_slug(state)["add-2"].result == 13


def test_failure_keeps_message_and_traceback_and_fails_downstream(executor):
    flow = T.failure_flow()

    state = flow.run(executor=executor)

    states = by_slug(state)
    broken = states["boom-1"]
    assert type(broken) is Failed
    assert broken.message == "ValueError: boom: broken on purpose"
    assert "Traceback (most recent call last)" in broken.traceback
    assert "in boom" in broken.traceback
    assert "ValueError: boom: broken on purpose" in broken.traceback
    assert isinstance(states["add-1"], TriggerFailed)
    assert states["add-1"].attempts == 0  # never ran
    assert isinstance(states["cleanup-1"], Success)
    assert states["cleanup-1"].result == "cleaned"
    # the terminal task succeeded, so by default the flow did too
    assert state.is_successful()


def test_retries_until_success_waiting_between_attempts(executor):
    with Flow("retry") as flow:
        T.flaky(3)

    state = flow.run(executor=executor)

    (task_state,) = state.result.values()
    assert isinstance(task_state, Success), task_state
    assert task_state.result == 3
    assert task_state.attempts == 3
    assert task_state.duration >= 2 * 0.1  # two retry delays


def test_retries_run_out(executor):
    with Flow("retry") as flow:
        T.flaky(10)

    state = flow.run(executor=executor)

    (task_state,) = state.result.values()
    assert type(task_state) is Failed
    assert task_state.attempts == 3  # 1 + max_retries
    assert task_state.message == "RuntimeError: attempt 3 fails"
    assert state.is_failed()


def test_fail_signal_does_not_retry(executor):
    with Flow("fail") as flow:
        T.gives_up()

    (task_state,) = flow.run(executor=executor).result.values()

    assert type(task_state) is Failed
    assert task_state.message == "no point retrying"
    assert task_state.attempts == 1


def test_timeout_and_retry_after_timeout(executor):
    with Flow("timeouts") as flow:
        T.sleepy(2.0)
        T.slow_first_time()

    state = flow.run(executor=executor)

    states = by_slug(state)
    assert isinstance(states["sleepy-1"], TimedOut)
    assert "timeout" in states["sleepy-1"].message
    assert isinstance(states["slow_first_time-1"], Success)
    assert states["slow_first_time-1"].result == 2


def test_skip_propagates_downstream(executor):
    with Flow("skip") as flow:
        skipped = T.skipper()
        downstream = T.add(skipped, 1)
        T.cleanup(upstream_tasks=[downstream], task_args={"skip_on_upstream_skip": False})

    state = flow.run(executor=executor)

    states = by_slug(state)
    assert isinstance(states["skipper-1"], Skipped)
    assert states["skipper-1"].message == "nothing to do today"
    assert isinstance(states["add-1"], Skipped)
    assert states["add-1"].attempts == 0
    assert states["cleanup-1"].result == "cleaned"
    assert state.is_successful()


def test_state_handlers_are_told_every_state(executor, tmp_path: Path):
    log = tmp_path / "states.log"
    with Flow("handlers") as flow:
        T.flaky(2)

    flow.run(executor=executor, state_handlers=[T.FileStateHandler(str(log))], run_name="run-h")

    assert log.read_text().splitlines() == [
        "flow Running run-h",
        "task flaky-1 Running run-h",
        "task flaky-1 Retrying run-h",
        "task flaky-1 Running run-h",
        "task flaky-1 Success run-h",
        "flow Success run-h",
    ]


def test_executor_runs_more_than_one_flow(executor):
    first = T.data_flow().run(parameters={"base": 1}, executor=executor)
    second = T.failure_flow().run(executor=executor)
    third = T.data_flow().run(parameters={"base": 2}, executor=executor)

    assert by_slug(first)["add-2"].result == 4
    assert by_slug(second)["boom-1"].is_failed()
    assert by_slug(third)["add-2"].result == 5


def test_tasks_run_where_the_executor_says(executor, request):
    with Flow("where") as flow:
        T.where()

    (task_state,) = flow.run(executor=executor).result.values()

    ran = task_state.result
    kind = request.node.callspec.params["executor"]
    if kind == "local":
        assert (ran["pid"], ran["thread"]) == (os.getpid(), threading.get_ident())
    elif kind == "dask-threads":
        assert ran["pid"] == os.getpid()
        assert ran["thread"] != threading.get_ident()
    else:
        assert ran["pid"] != os.getpid()


def test_independent_tasks_run_in_parallel_except_on_local_executor(executor, request):
    state = T.parallel_flow(4, 0.4).run(executor=executor)

    intervals = [s.result for s in state.result.values()]
    assert len(intervals) == 4
    overlap = T.max_overlap(intervals)
    if request.node.callspec.params["executor"] == "local":
        assert overlap == 1
    else:
        # every kind here has 2 workers: 2 tasks at a time, never more
        assert overlap == 2
