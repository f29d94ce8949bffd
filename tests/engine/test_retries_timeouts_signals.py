"""Retries, retry delays, timeouts, SKIP/FAIL/RETRY signals and task exceptions."""

from __future__ import annotations

import datetime
import itertools
import threading
import time

import pytest

from headwater import Flow, task
from headwater.core import signals
from headwater.core.state import Failed, Skipped, Success, TimedOut, TriggerFailed
from headwater.executors import LocalExecutor


def run(flow):
    return flow.run(executor=LocalExecutor())


def failing_until(n, **options):
    """A task that fails its first ``n - 1`` attempts, recording each attempt's time."""
    attempts = []

    @task(**options)
    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < n:
            raise ConnectionError(f"attempt {len(attempts)} failed")
        return len(attempts)

    return flaky, attempts


def test_retries_until_success():
    flaky, attempts = failing_until(3, max_retries=2)
    with Flow("f") as flow:
        t = flaky()

    state = run(flow).result[t]

    assert isinstance(state, Success)
    assert state.result == 3
    assert state.attempts == 3
    assert len(attempts) == 3


def test_retries_run_out():
    flaky, attempts = failing_until(10, max_retries=2)
    with Flow("f") as flow:
        t = flaky()

    state = run(flow).result[t]

    assert type(state) is Failed
    assert state.message == "ConnectionError: attempt 3 failed"
    assert state.attempts == 3
    assert len(attempts) == 3


def test_no_retries_by_default():
    flaky, attempts = failing_until(2)
    with Flow("f") as flow:
        t = flaky()

    assert run(flow).result[t].attempts == 1
    assert len(attempts) == 1


def test_retry_delay_is_waited_between_attempts():
    flaky, attempts = failing_until(3, max_retries=2, retry_delay=0.2)
    with Flow("f") as flow:
        t = flaky()

    started = time.monotonic()
    state = run(flow).result[t]
    elapsed = time.monotonic() - started

    assert isinstance(state, Success)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert len(gaps) == 2
    assert all(gap >= 0.2 for gap in gaps), gaps
    assert elapsed >= 0.4


def test_retry_delay_as_timedelta():
    flaky, attempts = failing_until(2, max_retries=1, retry_delay=datetime.timedelta(milliseconds=150))
    with Flow("f") as flow:
        flaky()

    run(flow)

    assert attempts[1] - attempts[0] >= 0.15


def test_timeout_ends_timed_out():
    @task(timeout=0.1)
    def slow():
        time.sleep(1)
        return "too late"

    with Flow("f") as flow:
        t = slow()
        after = slow(upstream_tasks=[t])

    started = time.monotonic()
    state = run(flow)

    assert type(state.result[t]) is TimedOut
    assert state.result[t].is_failed()
    assert "timeout of 0.1s" in state.result[t].message
    assert isinstance(state.result[after], TriggerFailed)
    assert time.monotonic() - started < 1  # the run did not wait for the sleeping code


def test_timeout_as_timedelta():
    @task(timeout=datetime.timedelta(milliseconds=100))
    def slow():
        time.sleep(1)

    with Flow("f") as flow:
        t = slow()

    assert type(run(flow).result[t]) is TimedOut


def test_timed_out_task_is_retried_when_it_has_retries():
    attempts = []

    @task(timeout=0.1, max_retries=2)
    def slow_then_fast():
        attempts.append(threading.get_ident())
        if len(attempts) == 1:
            time.sleep(0.5)
        return len(attempts)

    with Flow("f") as flow:
        t = slow_then_fast()

    state = run(flow).result[t]

    assert isinstance(state, Success)
    assert state.result == 2
    assert state.attempts == 2


def test_fast_task_with_a_timeout_returns_its_result():
    @task(timeout=5)
    def fast():
        return 42

    with Flow("f") as flow:
        t = fast()

    assert run(flow).result[t].result == 42


def test_timed_out_every_time():
    @task(timeout=0.05, max_retries=1)
    def slow():
        time.sleep(0.5)

    with Flow("f") as flow:
        t = slow()

    state = run(flow).result[t]
    assert type(state) is TimedOut
    assert state.attempts == 2


def test_fail_signal_fails_without_retrying():
    calls = []

    @task(max_retries=3, retry_delay=0.5)
    def refuse():
        calls.append(1)
        raise signals.FAIL("bad input, retrying won't help")

    with Flow("f") as flow:
        t = refuse()

    started = time.monotonic()
    state = run(flow).result[t]

    assert type(state) is Failed
    assert state.message == "bad input, retrying won't help"
    assert state.attempts == 1
    assert calls == [1]
    assert time.monotonic() - started < 0.5  # no retry delay was waited
    assert "FAIL: bad input, retrying won't help" in state.traceback


def test_fail_signal_without_message():
    @task
    def refuse():
        raise signals.FAIL()

    with Flow("f") as flow:
        t = refuse()

    assert run(flow).result[t].message == "task 'refuse-1' signalled FAIL"


def test_retry_signal_uses_the_retries():
    flaky_calls = []

    @task(max_retries=1)
    def again():
        flaky_calls.append(1)
        if len(flaky_calls) == 1:
            raise signals.RETRY("not yet")
        return "now"

    with Flow("f") as flow:
        t = again()

    state = run(flow).result[t]
    assert state.result == "now"
    assert state.attempts == 2


def test_skip_signal_and_propagation():
    ran = []

    @task
    def skipper():
        raise signals.SKIP("nothing new today")

    @task
    def record(x=None):
        ran.append(x)
        return "ran"

    with Flow("f") as flow:
        skipped = skipper()
        downstream = record(skipped)
        further = record(upstream_tasks=[downstream])
        runs_anyway = record(skipped, task_args={"skip_on_upstream_skip": False})

    state = run(flow)

    assert type(state.result[skipped]) is Skipped
    assert state.result[skipped].message == "nothing new today"
    assert type(state.result[downstream]) is Skipped
    assert state.result[downstream].message == "an upstream task was skipped"
    assert type(state.result[further]) is Skipped
    assert state.result[runs_anyway].result == "ran"
    assert ran == [None]  # only runs_anyway ran, with the skipped task's (empty) result
    assert state.is_successful()


def test_skip_signal_without_message():
    @task
    def skipper():
        raise signals.SKIP

    with Flow("f") as flow:
        t = skipper()

    assert run(flow).result[t].message == "task 'skipper-1' asked to be skipped"


def test_exceptions_become_failed_with_message_and_traceback():
    def helper_that_breaks(value):
        return {}[value]

    @task
    def lookup():
        return helper_that_breaks("missing-key")

    with Flow("f") as flow:
        t = lookup()

    state = run(flow).result[t]

    assert type(state) is Failed
    assert state.message == "KeyError: 'missing-key'"
    assert isinstance(state.result, KeyError)
    assert state.traceback.startswith("Traceback (most recent call last)")
    assert "in lookup" in state.traceback
    assert "in helper_that_breaks" in state.traceback
    assert state.traceback.rstrip().endswith("KeyError: 'missing-key'")


def test_system_exit_is_not_swallowed_as_a_task_failure():
    # BaseExceptions that are not Exceptions stop the run instead of becoming Failed
    @task
    def exits():
        raise SystemExit(3)

    with Flow("f") as flow:
        exits()

    with pytest.raises(SystemExit) as info:
        run(flow)
    assert info.value.code == 3
