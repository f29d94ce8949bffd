"""Creating runs in batches (``POST /runs/batch``, ``Client.create_flow_runs``), on SQLite and PostgreSQL.

All or nothing: one bad run refuses the batch, its error names the run by index, and no
run of the batch is stored. Run creation itself (``POST /runs``) shares the code path;
``test_flow_runs.py`` holds its tests.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from headwater.client import Client, ConflictError, NotFoundError, TooLargeError, ValidationError
from headwater.schemas.flow_runs import FlowRunCreate

from .helpers import metadata, project, register
from .live import LiveServer


def runs_of(api: httpx.Client, flow_id: str) -> int:
    return int(api.get("/runs", params={"flow_id": flow_id, "limit": 1}).json()["total"])


def batch(api: httpx.Client, runs: list[dict[str, Any]]) -> httpx.Response:
    return api.post("/runs/batch", json={"flow_runs": runs})


def test_a_batch_makes_every_run_in_order_with_labels_and_history(api: httpx.Client, unique: str) -> None:
    project(api, f"b-{unique}")
    flow_id = register(api, f"b-{unique}", "etl", labels=["dev"])
    other = register(api, f"b-{unique}", "load", labels=["gpu"])
    specs: list[dict[str, Any]] = [
        {"flow_id": flow_id, "run_name": "first", "parameters": {"x": 1}},
        {"flow_id": other, "labels": ["prod", "eu"]},
        {"project_name": f"b-{unique}", "flow_name": "etl", "run_name": "by-name"},
        {"flow_id": flow_id, "scheduled_start_time": "2030-01-01T12:00:00+02:00"},
    ]
    response = batch(api, specs)
    assert response.status_code == 201, response.text
    made = response.json()["flow_runs"]
    assert made[0]["run_name"] == "first" and made[2]["run_name"] == "by-name"
    assert [r["flow_id"] for r in made] == [flow_id, other, flow_id, flow_id]
    assert [r["labels"] for r in made] == [["dev"], ["eu", "prod"], ["dev"], ["dev"]]
    assert made[0]["parameters"] == {"x": 1} and made[3]["scheduled_start_time"].startswith("2030-01-01T10:00:00")
    assert len({r["id"] for r in made}) == 4 and {r["state"] for r in made} == {"Scheduled"}
    for answered in made:
        stored = api.get(f"/runs/{answered['id']}").json()
        assert stored == answered  # what the batch answered is what was stored
        states = api.get(f"/runs/{answered['id']}/states").json()
        assert [(s["state"], s["agent_id"]) for s in states] == [("Scheduled", None)]
    # labels are in the label table too: the claim and the filter find them
    found = api.get("/runs", params={"label": ["prod", "eu"], "flow_id": other}).json()
    assert [r["id"] for r in found["flow_runs"]] == [made[1]["id"]]
    assert batch(api, []).json() == {"flow_runs": []}


def test_idempotency_keys_in_a_batch(api: httpx.Client, unique: str) -> None:
    project(api, f"k-{unique}")
    flow_id = register(api, f"k-{unique}", "etl")
    first = api.post("/runs", json={"flow_id": flow_id, "idempotency_key": "a"}).json()
    made = batch(api, [{"flow_id": flow_id, "idempotency_key": "a"}, {"flow_id": flow_id, "idempotency_key": "b"},
                       {"flow_id": flow_id, "idempotency_key": "b"}, {"flow_id": flow_id}]).json()["flow_runs"]
    assert made[0] == first  # made before: answered as it is
    assert made[1]["id"] == made[2]["id"] != made[3]["id"]  # a key twice in one batch: one run
    assert runs_of(api, flow_id) == 3
    again = batch(api, [{"flow_id": flow_id, "idempotency_key": "b"}]).json()["flow_runs"]
    assert again[0]["id"] == made[1]["id"] and runs_of(api, flow_id) == 3


@pytest.mark.parametrize(
    ("bad", "status", "says"),
    [
        ({"flow_id": "no-such-flow"}, 404, "flow_runs[2]: flow 'no-such-flow' not found"),
        ({"project_name": "no-such-project", "flow_name": "etl"}, 404, "flow_runs[2]: project 'no-such-project'"),
        ({"flow_name": "nope"}, 404, "flow_runs[2]: flow 'nope' not found in project"),
        ({"parameters": {"x": 1, "y": 2}}, 422, "flow_runs[2]: flow 'etl' has no parameter(s) 'y'"),
        ({"archived": True}, 409, "flow_runs[2]: flow 'etl' version 1 is archived"),
    ],
    ids=["unknown-flow-id", "unknown-project", "unknown-flow-name", "unknown-parameter", "archived"],
)
def test_one_bad_run_refuses_the_batch_and_is_named(
    api: httpx.Client, unique: str, bad: dict[str, Any], status: int, says: str
) -> None:
    project(api, f"n-{unique}")
    flow_id = register(api, f"n-{unique}", "etl")
    spec: dict[str, Any] = dict(bad)
    if spec.pop("archived", False):
        archived = register(api, f"n-{unique}", "etl", labels=["old"])  # version 2...
        api.post(f"/flows/{flow_id}/archive")  # ...and version 1 archived
        spec = {"flow_id": flow_id}
        flow_id = archived
    elif "flow_name" in spec:
        spec.setdefault("project_name", f"n-{unique}")
    elif "flow_id" not in spec:
        spec["flow_id"] = flow_id
    good = {"flow_id": flow_id}
    response = batch(api, [good, good, spec, good])
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(says), response.json()["detail"]
    assert runs_of(api, flow_id) == 0


def test_a_missing_required_parameter_is_named(api: httpx.Client, unique: str) -> None:
    project(api, f"q-{unique}")
    made = api.post("/flows", json={"project_name": f"q-{unique}", "metadata": metadata("etl", required=True)})
    flow_id = made.json()["id"]
    response = batch(api, [{"flow_id": flow_id, "parameters": {"x": 1}}, {"flow_id": flow_id}])
    assert response.status_code == 422
    assert response.json()["detail"] == "flow_runs[1]: flow 'etl' needs parameter(s) 'x' (required, no default)"
    assert runs_of(api, flow_id) == 0


def test_bad_fields_and_hostile_json_are_named_by_their_place(api: httpx.Client, unique: str) -> None:
    project(api, f"h-{unique}")
    flow_id = register(api, f"h-{unique}", "etl")
    good = {"flow_id": flow_id}
    labels = batch(api, [good, {"flow_id": flow_id, "labels": ["ok", ""]}])
    assert labels.status_code == 422
    assert [e["loc"][:4] for e in labels.json()["detail"]] == [["body", "flow_runs", 1, "labels"]]
    neither = batch(api, [good, good, {"run_name": "no flow"}])
    assert neither.status_code == 422 and neither.json()["detail"][0]["loc"][:3] == ["body", "flow_runs", 2]
    unknown_field = batch(api, [{"flow_id": flow_id, "flow": "typo"}])
    assert unknown_field.status_code == 422 and unknown_field.json()["detail"][0]["loc"] == ["body", "flow_runs", 0,
                                                                                              "flow"]
    third = '{"flow_id": "' + flow_id + '", "parameters": {"x": NaN}}'
    text = json.dumps({"flow_runs": [good, good]})[:-2] + ", " + third + "]}"
    hostile = api.post("/runs/batch", content=text, headers={"content-type": "application/json"})
    assert hostile.status_code == 422 and "$.flow_runs[2].parameters.x" in hostile.json()["detail"]
    surrogate = text.replace("NaN", '"\\ud800"')
    lone = api.post("/runs/batch", content=surrogate, headers={"content-type": "application/json"})
    assert lone.status_code == 422 and "$.flow_runs[2].parameters.x" in lone.json()["detail"]
    assert batch(api, good).status_code == 422  # type: ignore[arg-type]  # not a list
    assert runs_of(api, flow_id) == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_batch_size_and_parameter_limits(fresh_server: Callable[..., LiveServer], kind: str) -> None:
    live = fresh_server(kind, env={"HEADWATER__SERVER__MAX_RUN_BATCH": "3",
                                   "HEADWATER__SERVER__MAX_PARAMETERS_SIZE": "100"})  # fmt: skip
    with httpx.Client(base_url=live.api, timeout=30) as api:
        project(api, "p")
        flow_id = register(api, "p", "f")
        over = batch(api, [{"flow_id": flow_id}] * 4)
        assert over.status_code == 413
        detail = over.json()["detail"]
        assert "at most 3 runs" in detail and "holds 4" in detail and "HEADWATER__SERVER__MAX_RUN_BATCH" in detail
        big = batch(api, [{"flow_id": flow_id}, {"flow_id": flow_id, "parameters": {"x": "a" * 200}}])
        assert big.status_code == 413 and big.json()["detail"].startswith("flow_runs[1]: the run's parameters are")
        assert runs_of(api, flow_id) == 0
        assert batch(api, [{"flow_id": flow_id}] * 3).status_code == 201
        assert runs_of(api, flow_id) == 3
        with Client(live.url) as client, pytest.raises(TooLargeError, match="at most 3 runs"):
            client.create_flow_runs([{"flow_id": flow_id}] * 4)


def test_the_client_creates_runs_in_batches(server: LiveServer, unique: str) -> None:
    with Client(server.url) as client:
        client.create_project(f"c-{unique}")
        flow_id = client.register_flow_metadata(f"c-{unique}", metadata("etl"), labels=["dev"]).id
        ids = client.create_flow_runs([
            {"flow_id": flow_id, "run_name": "one", "parameters": {"x": 3}},
            FlowRunCreate(project_name=f"c-{unique}", flow_name="etl", labels=["gpu"]),
            {"flow_id": flow_id, "labels": ("b", "a"), "idempotency_key": "k"},
        ])  # fmt: skip
        runs = [client.get_flow_run(i) for i in ids]
        assert runs[0].run_name == "one" and runs[0].parameters == {"x": 3}
        assert [r.labels for r in runs] == [["dev"], ["gpu"], ["a", "b"]]
        assert client.create_flow_runs([]) == []
        with pytest.raises(NotFoundError, match=r"flow_runs\[1\]: flow 'nope' not found"):
            client.create_flow_runs([{"flow_id": flow_id}, {"flow_id": "nope"}])
        with pytest.raises(ValidationError, match=r"flow_runs\.1\.labels|flow_runs\[1\]"):
            client.create_flow_runs([{"flow_id": flow_id}, {"flow_id": flow_id, "labels": [""]}])
        client.archive_flow(flow_id)
        with pytest.raises(ConflictError, match=r"flow_runs\[0\]: flow 'etl' version 1 is archived"):
            client.create_flow_runs([{"flow_id": flow_id}])
        with pytest.raises(TypeError, match="flow run 0 is str"):
            client.create_flow_runs(["etl"])  # type: ignore[list-item]
        assert len(client.list_flow_runs(flow_id=flow_id)) == 3


def test_one_key_sent_at_once_by_many_makes_one_run(server: LiveServer, unique: str) -> None:
    """Creates racing on one idempotency key: the losers of the unique index find the winner's run."""
    with httpx.Client(base_url=server.api, timeout=60) as api:
        project(api, f"race-{unique}")
        flow_id = register(api, f"race-{unique}", "etl")

    def create(i: int) -> list[str]:
        with httpx.Client(base_url=server.api, timeout=60) as own:
            if i % 2:
                answer = own.post("/runs", json={"flow_id": flow_id, "idempotency_key": "same"})
                assert answer.status_code == 201, answer.text
                return [answer.json()["id"]]
            answer = batch(own, [{"flow_id": flow_id, "idempotency_key": "same"}, {"flow_id": flow_id}])
            assert answer.status_code == 201, answer.text
            return [answer.json()["flow_runs"][0]["id"]]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = {i for found in pool.map(create, range(8)) for i in found}
    assert len(ids) == 1
    with httpx.Client(base_url=server.api, timeout=60) as api:
        assert runs_of(api, flow_id) == 1 + 4  # the keyed run, and each batch's unkeyed one
