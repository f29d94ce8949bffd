"""Projects and flow registration over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from .helpers import metadata, project, register, run


def test_project_create_list_delete_with_its_flows(api: httpx.Client, unique: str) -> None:
    pid = project(api, f"p-{unique}")
    flow_id = register(api, f"p-{unique}", "etl")
    run_id = run(api, flow_id)["id"]
    listed = {p["name"]: p for p in api.get("/projects").json()}
    assert listed[f"p-{unique}"]["flow_count"] == 1
    assert api.delete(f"/projects/{pid}").status_code == 204
    assert f"p-{unique}" not in {p["name"] for p in api.get("/projects").json()}
    assert api.get(f"/flows/{flow_id}").status_code == 404
    assert api.get(f"/runs/{run_id}").status_code == 404


def test_duplicate_project_is_409(api: httpx.Client, unique: str) -> None:
    project(api, f"dup-{unique}")
    response = api.post("/projects", json={"name": f"dup-{unique}"})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


def test_bad_bodies_are_422_naming_the_field(api: httpx.Client) -> None:
    response = api.post("/projects", json={"nmae": "x"})
    assert response.status_code == 422
    fields = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "name") in fields
    response = api.post("/projects", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert api.post("/projects", json={"name": 12}).status_code == 422
    assert api.delete("/projects/nope").status_code == 404


def test_register_is_idempotent_and_versions_changes(api: httpx.Client, unique: str) -> None:
    project(api, f"v-{unique}")
    body = {"project_name": f"v-{unique}", "metadata": metadata("etl"), "labels": ["dev"]}
    first = api.post("/flows", json=body)
    assert first.status_code == 201 and first.json()["version"] == 1 and first.json()["created"] is True
    again = api.post("/flows", json=body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["created"] is False
    # storing the flow again elsewhere is still the same flow
    moved = dict(body, metadata={**body["metadata"], "storage": {"kind": "local", "flows": {"etl": "/x/2"}}})
    moved_first = api.post("/flows", json=moved)
    assert moved_first.json()["version"] == 2
    moved["metadata"]["storage"]["flows"] = {"etl": "/x/3"}
    assert api.post("/flows", json=moved).json()["version"] == 2
    changed = dict(body, labels=["dev", "gpu"])
    second = api.post("/flows", json=changed)
    assert second.status_code == 201 and second.json()["version"] == 3
    assert second.json()["labels"] == ["dev", "gpu"]
    versions = api.get("/flows", params={"project_name": f"v-{unique}", "name": "etl"}).json()
    assert [f["version"] for f in versions] == [1, 2, 3]
    detail = api.get(f"/flows/{first.json()['id']}").json()
    assert detail["metadata"]["name"] == "etl" and detail["parameters"][0]["name"] == "x"


def test_idempotency_key_returns_the_same_version(api: httpx.Client, unique: str) -> None:
    project(api, f"k-{unique}")
    body = {"project_name": f"k-{unique}", "metadata": metadata("etl"), "idempotency_key": "deploy-1"}
    first = api.post("/flows", json=body).json()
    changed = dict(body, labels=["other"])
    assert api.post("/flows", json=changed).json()["id"] == first["id"]


def test_archive_hides_the_version_and_refuses_runs(api: httpx.Client, unique: str) -> None:
    project(api, f"a-{unique}")
    flow_id = register(api, f"a-{unique}", "etl")
    assert api.post(f"/flows/{flow_id}/archive").json()["archived"] is True
    assert api.get("/flows", params={"project_name": f"a-{unique}"}).json() == []
    assert len(api.get("/flows", params={"project_name": f"a-{unique}", "include_archived": True}).json()) == 1
    response = api.post("/runs", json={"flow_id": flow_id})
    assert response.status_code == 409 and "archived" in response.json()["detail"]


def test_bad_flow_metadata_is_refused_and_nothing_is_stored(api: httpx.Client, unique: str) -> None:
    project(api, f"b-{unique}")
    md = metadata("etl")
    md["edges"].append({"upstream": "ghost", "downstream": "double-1", "key": None})
    response = api.post("/flows", json={"project_name": f"b-{unique}", "metadata": md})
    assert response.status_code == 422 and "ghost" in response.text
    md = metadata("etl")
    del md["tasks"]
    response = api.post("/flows", json={"project_name": f"b-{unique}", "metadata": md})
    assert response.status_code == 422 and "tasks" in response.text
    response = api.post("/flows", json={"project_name": f"b-{unique}", "metadata": metadata("etl"),
                                        "labels": ["ok", "  "]})
    assert response.status_code == 422 and "non-empty" in response.text
    assert api.get("/flows", params={"project_name": f"b-{unique}"}).json() == []


def test_unknown_project_names_the_fix(api: httpx.Client, unique: str) -> None:
    response = api.post("/flows", json={"project_name": f"missing-{unique}", "metadata": metadata("etl")})
    assert response.status_code == 404
    assert f"headwater create project missing-{unique}" in response.json()["detail"]
