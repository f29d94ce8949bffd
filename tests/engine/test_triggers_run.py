"""Each trigger, decided by the real outcomes of upstream tasks."""

from __future__ import annotations

import pytest

from headwater import Flow, task
from headwater.core import signals
from headwater.core.state import Failed, Skipped, Success, TimedOut, TriggerFailed
from headwater.core.triggers import (
    all_failed,
    all_finished,
    all_successful,
    always_run,
    any_failed,
    any_successful,
)
from headwater.executors import LocalExecutor


@task
def ok():
    return "ok"


@task
def bad():
    raise RuntimeError("bad")


@task(timeout=0.05)
def too_slow():
    import time

    time.sleep(0.5)


@task
def skip():
    raise signals.SKIP("skip")


UPSTREAM = {"ok": ok, "bad": bad, "slow": too_slow, "skip": skip}


def run_with(trigger, upstream_kinds, **task_args):
    """Run upstream tasks of the given kinds, then a task with ``trigger`` after them."""
    ran = []

    @task
    def downstream():
        ran.append(True)
        return "downstream ran"

    with Flow("triggers") as flow:
        ups = [UPSTREAM[kind]() for kind in upstream_kinds]
        last = downstream(upstream_tasks=ups, task_args={"trigger": trigger, **task_args})
    state = flow.run(executor=LocalExecutor())
    return state.result[last], ran, [state.result[u] for u in ups]


@pytest.mark.parametrize(
    ("trigger", "upstream", "runs"),
    [
        (all_successful, ["ok", "ok"], True),
        (all_successful, ["ok", "bad"], False),
        (all_successful, ["ok", "slow"], False),
        (all_finished, ["ok", "bad", "slow"], True),
        (always_run, ["bad"], True),
        (any_successful, ["bad", "ok"], True),
        (any_successful, ["bad", "slow"], False),
        (any_failed, ["ok", "bad"], True),
        (any_failed, ["ok", "slow"], True),
        (any_failed, ["ok", "ok"], False),
        (all_failed, ["bad", "slow"], True),
        (all_failed, ["bad", "ok"], False),
    ],
)
def test_trigger_with_real_upstream_outcomes(trigger, upstream, runs):
    state, ran, upstream_states = run_with(trigger, upstream)

    # the upstream tasks really ended as named
    expected = {"ok": Success, "bad": Failed, "slow": TimedOut}
    assert [type(s) for s in upstream_states] == [expected[k] for k in upstream]
    if runs:
        assert isinstance(state, Success)
        assert state.result == "downstream ran"
        assert ran == [True]
    else:
        assert type(state) is TriggerFailed
        assert trigger.__name__ in state.message
        assert state.attempts == 0
        assert ran == []


def test_all_successful_is_the_default():
    @task
    def after():
        return 1

    with Flow("f") as flow:
        t = after(upstream_tasks=[bad()])

    assert isinstance(flow.run(executor=LocalExecutor()).result[t], TriggerFailed)
    assert t.trigger is all_successful


def test_trigger_failed_cascades_downstream():
    with Flow("f") as flow:
        first = ok(upstream_tasks=[bad()])
        second = ok(upstream_tasks=[first])

    state = flow.run(executor=LocalExecutor())

    assert isinstance(state.result[first], TriggerFailed)
    assert isinstance(state.result[second], TriggerFailed)


def test_skipped_upstream_counts_as_success_when_not_skipping_along():
    state, ran, _ = run_with(all_successful, ["ok", "skip"], skip_on_upstream_skip=False)
    assert ran == [True]
    assert isinstance(state, Success)


def test_any_failed_with_a_skipped_upstream_skips_by_default():
    state, ran, _ = run_with(any_failed, ["bad", "skip"])
    assert isinstance(state, Skipped)
    assert ran == []


def test_a_trigger_that_raises_fails_the_task_with_its_error():
    def broken_trigger(states):
        raise KeyError("who knows")

    state, ran, _ = run_with(broken_trigger, ["ok"])

    assert type(state) is Failed
    assert state.message == "trigger of task 'downstream-1' raised KeyError('who knows')"
    assert "who knows" in state.traceback
    assert ran == []


def test_a_custom_trigger_sees_the_upstream_states():
    seen = []

    def exactly_one_failed(states):
        seen.append(sorted(s.name for s in states))
        return sum(s.is_failed() for s in states) == 1

    _, ran, _ = run_with(exactly_one_failed, ["ok", "bad", "ok"])

    assert seen == [["Failed", "Success", "Success"]]
    assert ran == [True]


def test_tasks_without_upstream_ignore_their_trigger():
    state, ran, _ = run_with(all_failed, [])
    assert ran == [True]
    assert isinstance(state, Success)
