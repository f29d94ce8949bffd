"""Flow runs over HTTP: creation, labels snapshot, parameters, filters, states, task runs, logs."""

from __future__ import annotations

import datetime

import httpx

from .helpers import agent, metadata, project, register, run


def test_create_by_id_or_by_project_and_name_latest_version(api: httpx.Client, unique: str) -> None:
    project(api, f"r-{unique}")
    register(api, f"r-{unique}", "etl", labels=["v1"])
    latest = register(api, f"r-{unique}", "etl", labels=["v2"])
    by_name = api.post("/runs", json={"project_name": f"r-{unique}", "flow_name": "etl", "run_name": "nightly"})
    assert by_name.status_code == 201
    body = by_name.json()
    assert body["flow_id"] == latest and body["run_name"] == "nightly" and body["state"] == "Scheduled"
    assert body["labels"] == ["v2"] and body["project_name"] == f"r-{unique}" and body["version"] == 1
    assert api.post("/runs", json={"flow_id": latest, "project_name": "x"}).status_code == 422
    assert api.post("/runs", json={}).status_code == 422
    assert api.post("/runs", json={"flow_id": "nope"}).status_code == 404
    missing = api.post("/runs", json={"project_name": f"r-{unique}", "flow_name": "nope"})
    assert missing.status_code == 404 and "headwater register" in missing.json()["detail"]


def test_labels_are_copied_onto_the_run_and_never_change(api: httpx.Client, unique: str) -> None:
    project(api, f"l-{unique}")
    flow_id = register(api, f"l-{unique}", "etl", labels=["dev"])
    snapshot = run(api, flow_id)
    given = run(api, flow_id, labels=["gpu", "prod"])
    assert snapshot["labels"] == ["dev"] and given["labels"] == ["gpu", "prod"]
    register(api, f"l-{unique}", "etl", labels=["changed"])  # a new version with other labels
    assert api.get(f"/runs/{snapshot['id']}").json()["labels"] == ["dev"]
    assert api.post("/runs", json={"flow_id": flow_id, "labels": [""]}).status_code == 422
    assert api.post("/runs", json={"flow_id": flow_id, "labels": "dev"}).status_code == 422


def test_parameters_are_checked_against_the_flow(api: httpx.Client, unique: str) -> None:
    project(api, f"p-{unique}")
    body = {"project_name": f"p-{unique}", "metadata": metadata("etl", required=True)}
    flow_id = api.post("/flows", json=body).json()["id"]
    unknown = api.post("/runs", json={"flow_id": flow_id, "parameters": {"x": 1, "y": 2}})
    assert unknown.status_code == 422 and "'y'" in unknown.json()["detail"]
    missing = api.post("/runs", json={"flow_id": flow_id})
    assert missing.status_code == 422 and "needs parameter(s) 'x'" in missing.json()["detail"]
    ok = run(api, flow_id, parameters={"x": 5})
    assert ok["parameters"] == {"x": 5}
    assert api.get("/runs", params={"flow_id": flow_id}).json()["total"] == 1


def test_idempotency_key_returns_the_same_run(api: httpx.Client, unique: str) -> None:
    project(api, f"i-{unique}")
    flow_id = register(api, f"i-{unique}", "etl")
    first = run(api, flow_id, idempotency_key="nightly-2026-11-22")
    second = api.post("/runs", json={"flow_id": flow_id, "idempotency_key": "nightly-2026-11-22"})
    assert second.json()["id"] == first["id"]


def test_list_filters_and_paging(api: httpx.Client, unique: str) -> None:
    project(api, f"f-{unique}")
    flow_id = register(api, f"f-{unique}", "etl")
    ids = [run(api, flow_id, labels=[f"lab-{unique}", "a" if i % 2 else "b"])["id"] for i in range(5)]
    api.post(f"/runs/{ids[0]}/cancel")
    page = api.get("/runs", params={"project_name": f"f-{unique}", "limit": 2}).json()
    assert page["total"] == 5 and len(page["flow_runs"]) == 2
    rest = api.get("/runs", params={"project_name": f"f-{unique}", "limit": 10, "offset": 2}).json()
    assert len(rest["flow_runs"]) == 3
    assert {r["id"] for r in page["flow_runs"] + rest["flow_runs"]} == set(ids)
    assert api.get("/runs", params={"label": [f"lab-{unique}", "a"]}).json()["total"] == 2
    assert api.get("/runs", params={"label": f"lab-{unique}", "state": "Cancelled"}).json()["total"] == 1
    assert api.get("/runs", params={"flow_name": "etl", "project_name": f"f-{unique}",
                                    "state": ["Scheduled", "Cancelled"]}).json()["total"] == 5
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).isoformat()
    assert api.get("/runs", params={"project_name": f"f-{unique}", "since": future}).json()["total"] == 0
    assert api.get("/runs", params={"project_name": f"f-{unique}", "until": future}).json()["total"] == 5
    assert api.get("/runs", params={"limit": 0}).status_code == 422


def test_state_rules_version_lock_and_cancel(api: httpx.Client, unique: str) -> None:
    project(api, f"s-{unique}")
    flow_id = register(api, f"s-{unique}", "etl", labels=[f"s-{unique}"])
    r = run(api, flow_id)
    early = api.post(f"/runs/{r['id']}/state", json={"state": "Running"})
    assert early.status_code == 409 and "from Scheduled to Running" in early.json()["detail"]
    aid = agent(api, f"agent-{unique}", [f"s-{unique}"])
    claimed = api.post("/work/claim", json={"agent_id": aid, "labels": [f"s-{unique}"]}).json()["flow_runs"]
    assert [c["id"] for c in claimed] == [r["id"]] and claimed[0]["version"] == 2
    running = api.post(f"/runs/{r['id']}/state", json={"state": "Running", "version": 2})
    assert running.status_code == 200 and running.json()["start_time"] is not None
    stale = api.post(f"/runs/{r['id']}/state", json={"state": "Success", "version": 2})
    assert stale.status_code == 409 and "version 3" in stale.json()["detail"]
    bogus = api.post(f"/runs/{r['id']}/state", json={"state": "Exploded"})
    assert bogus.status_code == 422 and "not a flow-run state" in bogus.json()["detail"]
    beat = api.post(f"/runs/{r['id']}/heartbeat")
    assert beat.status_code == 200 and beat.json()["heartbeat"] is not None
    cancelling = api.post(f"/runs/{r['id']}/cancel").json()
    assert cancelling["state"] == "Cancelling"
    done = api.post(f"/runs/{r['id']}/state", json={"state": "Cancelled", "version": cancelling["version"]})
    assert done.json()["state"] == "Cancelled" and done.json()["end_time"] is not None
    assert api.post(f"/runs/{r['id']}/cancel").status_code == 409
    finished = api.post(f"/runs/{r['id']}/state", json={"state": "Running"})
    assert finished.status_code == 409 and "finished" in finished.json()["detail"]
    scheduled = run(api, flow_id)
    assert api.post(f"/runs/{scheduled['id']}/cancel").json()["state"] == "Cancelled"
    assert api.post("/runs/nope/state", json={"state": "Running"}).status_code == 404


def test_task_runs_upsert_by_slug(api: httpx.Client, unique: str) -> None:
    project(api, f"t-{unique}")
    r = run(api, register(api, f"t-{unique}", "etl"))
    now = datetime.datetime.now(datetime.UTC).isoformat()
    batch = {"task_runs": [
        {"task_slug": "x", "state": "Success", "attempts": 1, "start_time": now, "end_time": now},
        {"task_slug": "double-1", "state": "Running", "attempts": 1, "start_time": now},
    ]}
    assert api.post(f"/runs/{r['id']}/task_runs", json=batch).status_code == 200
    update = {"task_runs": [{"task_slug": "double-1", "state": "Failed", "message": "boom", "attempts": 2,
                             "end_time": now}]}
    api.post(f"/runs/{r['id']}/task_runs", json=update)
    task_runs = {t["task_slug"]: t for t in api.get(f"/runs/{r['id']}/task_runs").json()}
    assert set(task_runs) == {"x", "double-1"}
    assert task_runs["double-1"]["state"] == "Failed" and task_runs["double-1"]["attempts"] == 2
    assert task_runs["double-1"]["start_time"] is not None and task_runs["double-1"]["state_message"] == "boom"
    assert api.post(f"/runs/{r['id']}/task_runs", json={"task_runs": []}).status_code == 422
    assert api.get("/runs/nope/task_runs").status_code == 404


def test_logs_batched_paged_and_bounded(api: httpx.Client, unique: str) -> None:
    project(api, f"g-{unique}")
    r = run(api, register(api, f"g-{unique}", "etl"))
    now = datetime.datetime.now(datetime.UTC).isoformat()
    records = [{"timestamp": now, "level": "INFO", "message": f"line {i}", "task_slug": "double-1"} for i in range(25)]
    assert api.post(f"/runs/{r['id']}/logs", json={"records": records}).json() == {"stored": 25}
    first = api.get(f"/runs/{r['id']}/logs", params={"limit": 10}).json()
    assert [x["message"] for x in first["records"]] == [f"line {i}" for i in range(10)]
    second = api.get(f"/runs/{r['id']}/logs", params={"offset": first["next_offset"], "limit": 100}).json()
    assert len(second["records"]) == 15 and second["next_offset"] == 25
    too_many = [records[0]] * 1001
    big = api.post(f"/runs/{r['id']}/logs", json={"records": too_many})
    assert big.status_code == 413 and "at most 1000" in big.json()["detail"]
    bad = api.post(f"/runs/{r['id']}/logs", json={"records": [dict(records[0], level="LOUD")]})
    assert bad.status_code == 422
    assert api.get(f"/runs/{r['id']}/logs").json()["next_offset"] == 25  # nothing half-written


def test_agents_register_heartbeat_list(api: httpx.Client, unique: str) -> None:
    aid = agent(api, f"ag-{unique}", ["b", "a"])
    again = agent(api, f"ag-{unique}", ["c"])
    assert again == aid
    listed = {a["id"]: a for a in api.get("/agents").json()}
    assert listed[aid]["labels"] == ["c"]
    assert api.post(f"/agents/{aid}/heartbeat").status_code == 200
    assert api.post("/agents/nope/heartbeat").status_code == 404
    assert api.post("/agents", json={"name": "x", "kind": "t", "labels": ["ok", ""]}).status_code == 422


def test_explain_names_missing_labels_and_the_empty_label_rule(api: httpx.Client, unique: str) -> None:
    project(api, f"e-{unique}")
    flow_id = register(api, f"e-{unique}", "etl")
    labelled = run(api, flow_id, labels=[f"dev-{unique}", f"gpu-{unique}"])
    bare = run(api, flow_id, labels=[])
    fits = agent(api, f"fits-{unique}", [f"dev-{unique}", f"gpu-{unique}", "more"])
    lacks = agent(api, f"lacks-{unique}", [f"dev-{unique}"])
    verdict = api.get(f"/runs/{labelled['id']}/explain").json()
    by_id = {a["id"]: a for a in verdict["agents"]}
    assert verdict["matched"] is True
    assert by_id[fits]["can_run"] is True
    assert by_id[lacks]["can_run"] is False and by_id[lacks]["missing_labels"] == [f"gpu-{unique}"]
    bare_verdict = {a["id"]: a for a in api.get(f"/runs/{bare['id']}/explain").json()["agents"]}
    assert bare_verdict[fits]["can_run"] is False
    assert "no labels" in bare_verdict[fits]["reason"]
    assert api.get("/runs/nope/explain").status_code == 404
