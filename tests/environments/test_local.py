"""LocalEnvironment: runs in place with callbacks; packages a flow encrypted with Fernet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from headwater import Flow, task
from headwater.environments import LocalEnvironment, environment_from_spec
from headwater.executors import LocalDaskExecutor

from .contract import InPlaceEnvironmentContract

events: list[str] = []


class TestLocalEnvironment(InPlaceEnvironmentContract):
    def make_environment(self, tmp_path: Path, **kwargs: Any) -> LocalEnvironment:
        return LocalEnvironment(**kwargs)


@task
def extract() -> list[int]:
    events.append("extract")
    return [1, 2, 3]


@task
def load(data: list[int]) -> int:
    events.append("load")
    return sum(data)


@task
def explode() -> None:
    events.append("explode")
    raise RuntimeError("kaboom")


def etl() -> Flow:
    with Flow("etl") as flow:
        load(extract())
    return flow


@pytest.fixture(autouse=True)
def clear_events() -> None:
    events.clear()


def test_callbacks_run_around_the_flow() -> None:
    env = LocalEnvironment(on_start=lambda: events.append("start"), on_exit=lambda: events.append("exit"))
    state = env.run(etl())
    assert state.is_successful()
    assert events == ["start", "extract", "load", "exit"]


def test_on_exit_runs_when_the_flow_fails() -> None:
    with Flow("bad") as flow:
        explode()
    env = LocalEnvironment(on_start=lambda: events.append("start"), on_exit=lambda: events.append("exit"))
    assert env.run(flow).is_failed()
    assert events == ["start", "explode", "exit"]


def test_failing_on_start_fails_the_run_skips_the_flow_and_still_exits() -> None:
    def boom() -> None:
        raise ConnectionError("no cluster")

    env = LocalEnvironment(on_start=boom, on_exit=lambda: events.append("exit"))
    state = env.run(etl())
    assert state.is_failed() and "on_start failed: ConnectionError: no cluster" in str(state.message)
    assert events == ["exit"]


def test_failing_on_exit_fails_a_successful_run() -> None:
    def boom() -> None:
        raise OSError("disk full")

    state = LocalEnvironment(on_exit=boom).run(etl())
    assert state.is_failed() and "on_exit failed: OSError: disk full" in str(state.message)
    assert events == ["extract", "load"]


def test_executor_is_used_and_checked() -> None:
    env = LocalEnvironment(executor=LocalDaskExecutor(num_workers=2))
    assert env.run(etl()).is_successful()
    with pytest.raises(TypeError, match="must be a headwater Executor"):
        LocalEnvironment(executor="headwater.executors.LocalExecutor")  # type: ignore[arg-type]


def test_labels_are_non_empty_strings() -> None:
    assert LocalEnvironment(labels=["b", "a", "a"]).labels == {"a", "b"}
    with pytest.raises(ValueError, match="non-empty strings"):
        LocalEnvironment(labels=["ok", " "])
    with pytest.raises(ValueError, match="not the string"):
        LocalEnvironment(labels="dev")
    with pytest.raises(TypeError, match="on_start must be a function"):
        LocalEnvironment(on_start="start")  # type: ignore[arg-type]


def test_spec_is_complete_json_without_callables_or_secrets() -> None:
    key = Fernet.generate_key()
    env = LocalEnvironment(
        executor=LocalDaskExecutor(scheduler="processes", num_workers=2), labels=["dev"],
        on_start=print, metadata={"owner": "data"}, encryption_key=key,
    )
    built = env.build(etl())
    spec = built.serialize()
    assert spec == {
        "kind": "local", "labels": ["dev"], "metadata": {"owner": "data"},
        "executor": {"kind": "local-dask", "scheduler": "processes", "num_workers": 2},
        "built": True,
    }
    assert key.decode() not in str(spec)
    rebuilt = environment_from_spec(spec)
    assert isinstance(rebuilt, LocalEnvironment) and rebuilt.labels == {"dev"}
    assert rebuilt.executor is not None and rebuilt.executor.serialize() == spec["executor"]


def test_build_and_run_the_packaged_flow() -> None:
    env = LocalEnvironment(labels=["x"], on_exit=lambda: events.append("exit"))
    built = env.build(etl())
    assert built is not env and built.serialized_flow and env.serialized_flow is None
    assert built.labels == {"x"} and built.on_exit is env.on_exit and built.encryption_key == env.encryption_key
    state = built.run(runner_kwargs={"run_name": "packaged"})
    assert state.is_successful()
    assert {t.slug: s.result for t, s in state.result.items()} == {"extract-1": [1, 2, 3], "load-1": 6}
    assert events[-1] == "exit"


def test_a_built_flow_saved_to_a_file_loads_back_with_its_key(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    built = LocalEnvironment(encryption_key=key).build(etl())
    assert built.serialized_flow is not None
    path = tmp_path / "etl.flow"
    path.write_bytes(built.serialized_flow)
    loaded = LocalEnvironment(encryption_key=key, serialized_flow=path.read_bytes())
    assert loaded.run().is_successful()
    flow = loaded.deserialize_flow_from_bytes(path.read_bytes())
    assert flow.name == "etl"


def test_bad_keys_and_payloads_are_refused() -> None:
    with pytest.raises(ValueError, match="must be a Fernet key"):
        LocalEnvironment(encryption_key="short")
    with pytest.raises(ValueError, match="has this environment been built"):
        LocalEnvironment().run()
    built = LocalEnvironment().build(etl())
    assert built.serialized_flow is not None
    other_key = LocalEnvironment(encryption_key=Fernet.generate_key(), serialized_flow=built.serialized_flow)
    with pytest.raises(ValueError, match="encrypted with another key, or altered"):
        other_key.run()
    tampered = bytearray(built.serialized_flow)
    tampered[40] ^= 1
    altered = LocalEnvironment(encryption_key=built.encryption_key, serialized_flow=bytes(tampered))
    with pytest.raises(ValueError, match="encrypted with another key, or altered"):
        altered.run()
    with pytest.raises(ValueError, match="no encryption_key"):
        LocalEnvironment().deserialize_flow_from_bytes(built.serialized_flow)


def test_a_flow_has_no_environment_until_one_is_set() -> None:
    # the default (a LocalEnvironment) is chosen where a run starts: the flow-run process
    flow = etl()
    assert flow.environment is None
    assert flow.serialize()["environment"] is None


def test_registration_says_which_executor_deployed_runs_use() -> None:
    from headwater.executors import LocalExecutor
    from headwater.registration import executor_note

    flow = etl()
    assert executor_note(flow) is None
    flow.executor = LocalExecutor()
    assert executor_note(flow) is None  # the environment names none: flow.executor is used everywhere
    flow.environment = LocalEnvironment(executor=LocalDaskExecutor())
    note = executor_note(flow)
    assert note is not None
    assert "deployed runs use the environment's (LocalDaskExecutor)" in note and "flow.run() uses" in note


def test_a_flow_runner_error_is_raised_as_itself_after_on_exit_runs(tmp_path: Path) -> None:
    from headwater import Parameter

    ran: list[str] = []
    with Flow("needs-x") as flow:
        Parameter("x")
    env = LocalEnvironment(on_exit=lambda: ran.append("on_exit"))
    with pytest.raises(Exception) as raised:
        env.run(flow, parameters={"nope": 1})
    assert not isinstance(raised.value, AssertionError), raised.value  # the runner's own error, not a bare assert
    assert "nope" in str(raised.value) and ran == ["on_exit"]
