"""The contract every executor passes (STYLE.md rule 4): flow behaviour and the plugin rules.

A backend's test module subclasses :class:`ExecutorContract` as ``Test<Name>`` and
overrides :meth:`~ExecutorContract.make_executor` (and ``runs_in``/``parallel`` to say
where its tasks run and how many at once) — one class, and every test below runs on
it: results flowing downstream, failures, retries, timeouts, skips, state handlers,
running several flows, where tasks run and how many at once; then the plugin rules:
``wait`` takes any structure and keeps its shape, submitted work runs once however
often it is waited on, a started executor pickles without its live parts, and its
spec round-trips through the registry as ``{"kind": ...}``.
"""

from __future__ import annotations

import collections
import inspect
import json
import os
import pickle
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from headwater import Flow
from headwater.core.state import Failed, Skipped, Success, TimedOut, TriggerFailed
from headwater.executors import Executor, executor_from_spec
from headwater.executors.registry import registry

from . import tasks as T
from .tasks import by_slug

Pair = collections.namedtuple("Pair", ["left", "right"])


def count_call(path: str, value: Any) -> Any:
    """Append a line to ``path`` (a side effect every process can see) and return ``value``."""
    with open(path, "a") as out:
        out.write(f"{value}\n")
    return value


def double(x: int) -> int:
    return 2 * x


def scale(x: int, by: int = 1) -> int:
    return x * by


class ExecutorContract:
    #: where tasks run: "here" (this thread), "thread" (another thread of this process), "process".
    runs_in: ClassVar[str] = "process"
    #: how many independent tasks run at once (the executors here are made with 2 workers).
    parallel: ClassVar[int] = 2

    def make_executor(self, request: pytest.FixtureRequest) -> Executor:
        """A fresh executor of this backend (``request`` gives fixtures such as a cluster)."""
        raise NotImplementedError

    @pytest.fixture
    def executor(self, request: pytest.FixtureRequest) -> Executor:
        return self.make_executor(request)

    # -- flows run the same on every executor ---------------------------------------------

    def test_results_constants_parameters_and_collections_flow_downstream(self, executor):
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


    def test_parameter_default_is_used_when_not_given(self, executor):
        state = T.data_flow().run(executor=executor)

        assert by_slug(state)["add-2"].result == 13


    def test_failure_keeps_message_and_traceback_and_fails_downstream(self, executor):
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


    def test_retries_until_success_waiting_between_attempts(self, executor):
        with Flow("retry") as flow:
            T.flaky(3)

        state = flow.run(executor=executor)

        (task_state,) = state.result.values()
        assert isinstance(task_state, Success), task_state
        assert task_state.result == 3
        assert task_state.attempts == 3
        assert task_state.duration >= 2 * 0.1  # two retry delays


    def test_retries_run_out(self, executor):
        with Flow("retry") as flow:
            T.flaky(10)

        state = flow.run(executor=executor)

        (task_state,) = state.result.values()
        assert type(task_state) is Failed
        assert task_state.attempts == 3  # 1 + max_retries
        assert task_state.message == "RuntimeError: attempt 3 fails"
        assert state.is_failed()


    def test_fail_signal_does_not_retry(self, executor):
        with Flow("fail") as flow:
            T.gives_up()

        (task_state,) = flow.run(executor=executor).result.values()

        assert type(task_state) is Failed
        assert task_state.message == "no point retrying"
        assert task_state.attempts == 1


    def test_timeout_and_retry_after_timeout(self, executor):
        with Flow("timeouts") as flow:
            T.sleepy(2.0)
            T.slow_first_time()

        state = flow.run(executor=executor)

        states = by_slug(state)
        assert isinstance(states["sleepy-1"], TimedOut)
        assert "timeout" in states["sleepy-1"].message
        assert isinstance(states["slow_first_time-1"], Success)
        assert states["slow_first_time-1"].result == 2


    def test_skip_propagates_downstream(self, executor):
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


    def test_state_handlers_are_told_every_state(self, executor, tmp_path: Path):
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


    def test_executor_runs_more_than_one_flow(self, executor):
        first = T.data_flow().run(parameters={"base": 1}, executor=executor)
        second = T.failure_flow().run(executor=executor)
        third = T.data_flow().run(parameters={"base": 2}, executor=executor)

        assert by_slug(first)["add-2"].result == 4
        assert by_slug(second)["boom-1"].is_failed()
        assert by_slug(third)["add-2"].result == 5

    def test_tasks_run_where_the_executor_says(self, executor):
        with Flow("where") as flow:
            T.where()

        (task_state,) = flow.run(executor=executor).result.values()

        ran = task_state.result
        if self.runs_in == "here":
            assert (ran["pid"], ran["thread"]) == (os.getpid(), threading.get_ident())
        elif self.runs_in == "thread":
            assert ran["pid"] == os.getpid()
            assert ran["thread"] != threading.get_ident()
        else:
            assert ran["pid"] != os.getpid()

    def test_independent_tasks_run_as_parallel_as_the_executor_allows(self, executor):
        state = T.parallel_flow(4, 0.4).run(executor=executor)

        intervals = [s.result for s in state.result.values()]
        assert len(intervals) == 4
        assert T.max_overlap(intervals) == self.parallel

    # -- the plugin rules ---------------------------------------------------------------------

    def test_the_spec_is_json_and_round_trips_through_the_registry(self, executor):
        spec = executor.serialize()

        assert json.loads(json.dumps(spec)) == spec
        assert spec["kind"] in registry.known_kinds()
        again = executor_from_spec(spec)
        assert type(again) is type(executor)
        assert again.serialize() == spec

    def test_the_base_is_abstract_and_this_backend_is_concrete(self, executor):
        assert inspect.isabstract(Executor)
        assert not inspect.isabstract(type(executor))
        assert len(Executor.__abstractmethods__) <= 4

    def test_wait_keeps_any_structure_and_passes_other_values_through(self, executor):
        with executor.start():
            one, two, three = (executor.submit(double, n) for n in (1, 2, 3))
            assert executor.wait(7) == 7
            assert executor.wait("text") == "text"
            assert executor.wait(None) is None
            assert executor.wait(one) == 2
            got = executor.wait([one])
            assert got == [2] and type(got) is list
            got = executor.wait((one, two))
            assert got == (2, 4) and type(got) is tuple
            assert executor.wait({"a": one, "b": [two, (three, "x")]}) == {"a": 2, "b": [4, (6, "x")]}
            pair = executor.wait(Pair(one, 5))
            assert pair == Pair(2, 5) and type(pair) is Pair
            assert executor.wait([]) == [] and executor.wait({}) == {}

    def test_submit_passes_keyword_arguments(self, executor):
        with executor.start():
            assert executor.wait(executor.submit(scale, 3, by=5)) == 15

    def test_submitted_work_runs_once_however_often_it_is_waited_on(self, executor, tmp_path: Path):
        calls = tmp_path / "calls.txt"
        with executor.start():
            first = executor.submit(count_call, str(calls), 1)
            assert executor.wait(first) == 1
            assert executor.wait([first]) == [1]
            second = executor.submit(count_call, str(calls), 2)
            assert executor.wait({"both": [first, second]}) == {"both": [1, 2]}
            assert executor.wait(second) == 2
        assert sorted(calls.read_text().split()) == ["1", "2"]

    def test_a_started_executor_pickles_without_its_live_parts(self, executor):
        with executor.start():
            future = executor.submit(double, 21)
            copy = pickle.loads(pickle.dumps(executor))
            assert executor.wait(future) == 42
        assert type(copy) is type(executor)
        assert copy.serialize() == executor.serialize()
        with copy.start():
            assert copy.wait(copy.submit(double, 4)) == 8
