"""Environments of the user's own: the base itself, and a subclass registered under no kind.

Both pass the contract, with the documented one-argument ``execute(flow)`` and
``run(flow)``; a subclass round-trips through its spec by import path. Through a
real flow-run process and a real agent: ``tests/execution/test_environments.py``
and ``tests/acceptance/test_life_of_a_run.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headwater import Flow, task
from headwater.environments import Environment, environment_from_spec
from headwater.plugins import PluginError

from .contract import InPlaceEnvironmentContract, Recorder


class CountingEnvironment(Environment):
    """Written as the documented system's docs say: ``setup(flow)``, ``execute(flow)``, ``run(flow)``."""

    def __init__(self, note_to: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.note_to = note_to

    def setup(self, flow: Flow) -> None:
        self._note("setup")

    def execute(self, flow: Flow) -> None:  # type: ignore[override]
        self._note("execute")
        self.run(flow)

    def run(self, flow: Flow) -> Any:  # type: ignore[override]
        self._note("run")
        return super().run(flow)

    def spec_args(self) -> dict[str, Any]:
        return {"note_to": self.note_to}

    def _note(self, what: str) -> None:
        if self.note_to:
            Recorder(Path(self.note_to)).note(what)


class TestBaseEnvironment(InPlaceEnvironmentContract):
    def make_environment(self, tmp_path: Path, **kwargs: Any) -> Environment:
        return Environment(**kwargs)


class TestCustomEnvironment(InPlaceEnvironmentContract):
    def make_environment(self, tmp_path: Path, **kwargs: Any) -> Environment:
        return CountingEnvironment(note_to=str(tmp_path / "steps.txt"), **kwargs)


@task
def one() -> int:
    return 1


def test_a_custom_environment_is_named_by_its_import_path_and_comes_back(tmp_path: Path) -> None:
    env = CountingEnvironment(note_to=str(tmp_path / "steps.txt"), labels=["x"])

    spec = env.serialize()

    assert spec["kind"] == "environments.test_custom.CountingEnvironment"
    again = environment_from_spec(spec)
    assert isinstance(again, CountingEnvironment) and again.note_to == env.note_to and again.labels == {"x"}


def test_the_documented_signatures_run_the_flow(tmp_path: Path) -> None:
    env = CountingEnvironment(note_to=str(tmp_path / "steps.txt"))
    with Flow("f") as flow:
        one()

    env.setup(flow)
    assert env.execute(flow) is None

    assert Recorder(tmp_path / "steps.txt").lines() == ["setup", "execute", "run"]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("environments.test_custom.Nope", "does not resolve: module 'environments.test_custom' has no attribute"),
        ("no_such_module_hw.Env", "does not resolve"),
        ("headwater.core.flow.Flow", "not a concrete headwater Environment class"),
        ("kubernetes", "unknown environment kind 'kubernetes'; known kinds: dask-cloudprovider, dask-kubernetes, "
         "docker, fargate-task, kubernetes-job, local, remote"),
    ],
)
def test_a_kind_that_names_no_environment_is_a_clear_error(kind: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        environment_from_spec({"kind": kind, "labels": []})


class ThreadedEnvironment(Environment):
    """Runs the flow in a thread of its own, where the deployment's context variable is not set."""

    def execute(self, flow: Flow) -> None:  # type: ignore[override]
        import threading

        worker = threading.Thread(target=self.run, args=(flow,))
        worker.start()
        worker.join()


def test_a_flow_run_in_another_thread_of_the_process_is_still_the_deployed_run() -> None:
    from headwater.engine.context import deployed

    with Flow("threaded") as flow:
        one()

    with deployed("threaded", flow_run_id="run-7", run_name="seven") as deployment:
        assert ThreadedEnvironment().execute(flow) is None

    assert deployment.taken and deployment.final_state is not None and deployment.final_state.is_successful()
