"""flow.serialize(): JSON metadata validated by headwater.schemas, and its round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from headwater import Flow, Parameter, Task, task
from headwater.core.triggers import always_run
from headwater.executors import LocalDaskExecutor
from headwater.schemas import FlowMetadata
from headwater.serialization import MetadataTask, SerializationError, flow_from_metadata
from headwater.storage import Local


@task(max_retries=2, retry_delay=1.5, timeout=30, tags=["io"])
def extract(n: int) -> list[int]:
    return list(range(n))


@task
def transform(data: list[int], factor: int = 2) -> list[int]:
    return [d * factor for d in data]


class Load(Task):
    def run(self, data: list[int]) -> int:
        return len(data)


@task(trigger=always_run)
def cleanup() -> None:
    return None


def build(tmp_path: Path) -> Flow:
    with Flow("etl", storage=Local(directory=str(tmp_path), labels=["dev"])) as flow:
        n = Parameter("n", default=3)
        data = transform(extract(n), factor=10)
        loaded = Load(name="load")(data)
        cleanup(upstream_tasks=[loaded])
    return flow


def test_metadata_is_json_and_complete(tmp_path: Path) -> None:
    flow = build(tmp_path)
    md = flow.serialize()
    assert json.loads(json.dumps(md)) == md
    FlowMetadata.model_validate(md)
    assert md["name"] == "etl"
    tasks = {t["slug"]: t for t in md["tasks"]}
    assert set(tasks) == {"n", "extract-1", "transform-1", "load-1", "cleanup-1"}
    ex = tasks["extract-1"]
    assert (ex["max_retries"], ex["retry_delay"], ex["timeout"], ex["tags"]) == (2, 1.5, 30.0, ["io"])
    assert ex["function"].endswith("extract")
    assert tasks["cleanup-1"]["trigger"] == "all_finished"
    assert tasks["load-1"]["type"].endswith("test_flow_metadata.Load")
    assert tasks["transform-1"]["constant_args"] == ["factor"]
    edges = {(e["upstream"], e["downstream"], e["key"]) for e in md["edges"]}
    assert edges == {
        ("n", "extract-1", "n"),
        ("extract-1", "transform-1", "data"),
        ("transform-1", "load-1", "data"),
        ("load-1", "cleanup-1", None),
    }
    assert md["parameters"] == [{"name": "n", "default": 3, "required": False}]
    assert md["storage"]["kind"] == "local"
    assert "dev" in md["labels"]
    assert md["environment"] is None  # none set: the flow-run process runs it in a LocalEnvironment


def test_environment_spec_and_labels_are_in_the_metadata(tmp_path: Path) -> None:
    from headwater.environments import LocalEnvironment, RemoteEnvironment

    flow = build(tmp_path)
    flow.environment = RemoteEnvironment(
        "headwater.executors.LocalDaskExecutor", {"num_workers": 2}, labels=["gpu"], metadata={"team": "data"},
        on_start=lambda: None,
    )
    md = flow.serialize()
    assert md["environment"]["kind"] == "remote"
    assert md["environment"]["executor_path"] == "headwater.executors.LocalDaskExecutor"
    assert md["environment"]["executor"] == {"kind": "local-dask", "scheduler": "threads", "num_workers": 2}
    assert md["environment"]["metadata"] == {"team": "data"}
    assert {"gpu", "dev"} <= set(md["labels"])
    rebuilt = flow_from_metadata(md)
    assert isinstance(rebuilt.environment, RemoteEnvironment)
    assert rebuilt.serialize() == md
    flow.environment = LocalEnvironment(executor=LocalDaskExecutor(num_workers=3), labels=["a"])
    again = flow_from_metadata(flow.serialize())
    assert again.environment.executor.num_workers == 3 and again.environment.labels == {"a"}


def test_round_trip_rebuilds_the_same_graph(tmp_path: Path) -> None:
    flow = build(tmp_path)
    md = flow.serialize()
    rebuilt = flow_from_metadata(md)
    assert rebuilt.serialize() == md
    assert {t.slug for t in rebuilt.tasks} == {t.slug for t in flow.tasks}
    placeholder = rebuilt.get_tasks(slug="load-1")[0]
    assert isinstance(placeholder, MetadataTask)
    with pytest.raises(RuntimeError, match="load the flow from its storage"):
        placeholder.run(data=[1])


def test_executor_spec_round_trips(tmp_path: Path) -> None:
    flow = build(tmp_path)
    flow.executor = LocalDaskExecutor(scheduler="processes", num_workers=2)
    md = flow.serialize()
    assert md["executor"] == {"kind": "local-dask", "scheduler": "processes", "num_workers": 2}
    rebuilt = flow_from_metadata(md)
    assert isinstance(rebuilt.executor, LocalDaskExecutor)
    assert rebuilt.executor.num_workers == 2


def test_parameter_default_not_json_is_a_clear_error() -> None:
    with Flow("bad") as flow:
        transform(Parameter("when", default=object()))
    with pytest.raises(SerializationError, match="default of parameter 'when' is not JSON"):
        flow.serialize()


def test_invalid_flow_is_not_serialized() -> None:
    a, b = transform.copy(), transform.copy()
    flow = Flow("cyclic")
    flow.add_edge(a, b)
    flow.add_edge(b, a)
    with pytest.raises(ValueError, match="cycle"):
        flow.serialize()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda md: md["edges"].append({"upstream": "nope", "downstream": "load-1", "key": None}), "unknown task"),
        (lambda md: md["tasks"].append(dict(md["tasks"][0])), "appears twice"),
        (lambda md: md.update(labels=["ok", ""]), "non-empty strings"),
        (lambda md: md.update(metadata_version=99), "newer than this headwater"),
        (lambda md: md["tasks"][0].update(max_retries=-1), "max_retries"),
        (lambda md: md.update(surprise=1), "surprise"),
    ],
)
def test_bad_metadata_names_the_problem(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    md = build(tmp_path).serialize()
    change(md)
    with pytest.raises(ValidationError, match=message):
        flow_from_metadata(md)


def test_visualize_writes_dot(tmp_path: Path) -> None:
    flow = build(tmp_path)
    out = tmp_path / "etl.dot"
    dot = flow.visualize(filename=str(out))
    assert out.read_text() == dot
    assert dot.startswith('digraph "etl"')
    assert '"n" [label="n", shape=ellipse]' in dot
    assert '"extract-1" -> "transform-1" [label="data"]' in dot
    assert '"load-1" -> "cleanup-1" [style=dashed]' in dot
