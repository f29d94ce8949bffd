"""The contract every environment passes (STYLE.md rule 4): arguments, the spec, callbacks, running.

An environment's test module subclasses :class:`EnvironmentContract` as ``Test<Name>``
and overrides :meth:`~EnvironmentContract.make_environment` — one class, and every
test below runs on it: labels follow the one label rule, callbacks must be callables,
the spec is complete JSON that round-trips through the registry (by kind, or by
import path for a class of the user's own), the environment pickles with its flow,
and ``run(flow)`` / ``execute(flow)`` — called with the flow alone, as the flow-run
process calls them — run ``on_start`` → the flow → ``on_exit`` (also when the flow
or ``on_start`` fails). An environment whose ``execute`` runs the flow in place takes in
:class:`InPlaceEnvironmentContract`, which adds that; one whose ``execute`` starts another
hop (a Kubernetes Job) takes :class:`EnvironmentContract` and tests its hop itself.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from headwater import Flow, task
from headwater.core.state import State
from headwater.engine.context import deployed
from headwater.engine.handlers import StateHandler
from headwater.environments import Environment, environment_from_spec
from headwater.environments.registry import registry


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def broken() -> None:
    raise ValueError("broken on purpose")


def small_flow() -> Flow:
    with Flow("contract") as flow:
        add(add(1, 2), 3)
    return flow


def failing_flow() -> Flow:
    with Flow("contract") as flow:
        broken()
    return flow


class Recorder:
    """Callbacks that write what ran, in order, to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, what: str) -> None:
        with self.path.open("a") as out:
            out.write(what + "\n")

    def on_start(self) -> None:
        self.note("on_start")

    def on_exit(self) -> None:
        self.note("on_exit")

    def lines(self) -> list[str]:
        return self.path.read_text().split() if self.path.exists() else []


class EnvironmentContract:
    def make_environment(self, tmp_path: Path, **kwargs: Any) -> Environment:
        """An environment of this kind; ``kwargs`` are Environment arguments (labels, callbacks, metadata)."""
        raise NotImplementedError

    # -- arguments ---------------------------------------------------------------------------

    def test_labels_are_a_set_that_follows_the_label_rule(self, tmp_path: Path) -> None:
        assert self.make_environment(tmp_path, labels=["b", "a", "b"]).labels == {"a", "b"}
        assert self.make_environment(tmp_path).labels == set()
        with pytest.raises(ValueError, match="not the string 'dev'"):
            self.make_environment(tmp_path, labels="dev")
        with pytest.raises(ValueError, match="non-empty strings of at most 200 characters"):
            self.make_environment(tmp_path, labels=["ok", " "])
        with pytest.raises(ValueError, match="non-empty strings of at most 200 characters"):
            self.make_environment(tmp_path, labels=["x" * 201])

    def test_callbacks_must_be_functions(self, tmp_path: Path) -> None:
        with pytest.raises(TypeError, match="on_start must be a function"):
            self.make_environment(tmp_path, on_start="start")
        with pytest.raises(TypeError, match="on_exit must be a function"):
            self.make_environment(tmp_path, on_exit=3)

    # -- the spec ----------------------------------------------------------------------------

    def test_the_spec_is_complete_json_and_round_trips_through_the_registry(self, tmp_path: Path) -> None:
        env = self.make_environment(tmp_path, labels=["dev"], metadata={"team": "data"}, on_start=print)
        spec = env.serialize()

        assert json.loads(json.dumps(spec)) == spec
        assert {"kind", "labels", "metadata", "executor"} <= set(spec)
        assert spec["labels"] == ["dev"] and spec["metadata"] == {"team": "data"}
        assert "print" not in json.dumps(spec)  # callables travel with the flow's code, not in the spec
        own_path = f"{type(env).__module__}.{type(env).__qualname__}"
        assert spec["kind"] in registry.known_kinds() or spec["kind"] == own_path
        again = environment_from_spec(spec)
        assert type(again) is type(env)
        assert again.serialize() == spec
        assert again.on_start is None

    def test_a_spec_with_a_key_it_does_not_take_names_it(self, tmp_path: Path) -> None:
        spec = {**self.make_environment(tmp_path).serialize(), "surprise": 1}
        with pytest.raises(ValueError, match=r"has key\(s\) 'surprise' that \w+ does not take"):
            environment_from_spec(spec)

    def test_the_base_is_an_abc_with_few_abstract_methods(self, tmp_path: Path) -> None:
        env = self.make_environment(tmp_path)
        assert isinstance(env, Environment)
        assert inspect.isabstract(type(env)) is False
        assert len(getattr(Environment, "__abstractmethods__", ())) <= 4

    def test_it_pickles_with_its_flow(self, tmp_path: Path) -> None:
        flow = small_flow()
        flow.environment = self.make_environment(tmp_path, labels=["dev"], metadata={"m": 1})

        again = cloudpickle.loads(cloudpickle.dumps(flow))

        assert type(again.environment) is type(flow.environment)
        assert again.environment.serialize() == flow.environment.serialize()

    # -- running -----------------------------------------------------------------------------

    def test_run_calls_on_start_then_the_flow_then_on_exit(self, tmp_path: Path) -> None:
        record = Recorder(tmp_path / "record.txt")
        env = self.make_environment(tmp_path, on_start=record.on_start, on_exit=record.on_exit)

        state = env.run(small_flow())

        assert isinstance(state, State) and state.is_successful(), state
        assert sorted(s.result for s in state.result.values()) == [3, 6]
        assert record.lines() == ["on_start", "on_exit"]

    def test_on_exit_runs_when_the_flow_fails(self, tmp_path: Path) -> None:
        record = Recorder(tmp_path / "record.txt")
        env = self.make_environment(tmp_path, on_start=record.on_start, on_exit=record.on_exit)

        state = env.run(failing_flow())

        assert state.is_failed()
        assert record.lines() == ["on_start", "on_exit"]

    def test_a_failing_on_start_fails_the_run_and_on_exit_still_runs(self, tmp_path: Path) -> None:
        record = Recorder(tmp_path / "record.txt")

        def refuse() -> None:
            raise RuntimeError("no capacity")

        env = self.make_environment(tmp_path, on_start=refuse, on_exit=record.on_exit)

        state = env.run(small_flow())

        assert state.is_failed() and "on_start failed: RuntimeError: no capacity" in (state.message or "")
        assert record.lines() == ["on_exit"]



class InPlaceEnvironmentContract(EnvironmentContract):
    """The contract of an environment whose ``execute(flow)`` runs the flow in this process."""

    def test_setup_and_execute_take_the_flow_alone_as_documented(self, tmp_path: Path) -> None:
        record = Recorder(tmp_path / "record.txt")
        env = self.make_environment(tmp_path, on_start=record.on_start, on_exit=record.on_exit)
        flow = small_flow()
        seen: list[str] = []

        class Handler(StateHandler):
            def on_flow_state(self, context: Any, state: State) -> None:
                seen.append(f"{context.flow_run_id} {state.name}")

        # the flow-run process deploys a run this way: the run's arguments reach the runner
        with deployed(flow.name, flow_run_id="run-1", run_name="r", state_handlers=[Handler()]) as deployment:
            env.setup(flow)
            returned = env.execute(flow)

        final = returned if isinstance(returned, State) else deployment.final_state
        assert final is not None and final.is_successful()
        assert seen == ["run-1 Running", "run-1 Success"]
        assert record.lines() == ["on_start", "on_exit"]
