"""Unknown query parameters are refused with the route's own names, not silently ignored."""

from __future__ import annotations

import re

import httpx

from .helpers import project, register, run


def test_a_misspelt_filter_is_refused_and_names_the_right_one(api: httpx.Client, unique: str) -> None:
    project(api, f"q-{unique}")
    flow_id = register(api, f"q-{unique}", "etl")
    labelled = run(api, flow_id, labels=[f"only-{unique}"])
    run(api, flow_id)

    typo = api.get("/runs", params={"labels": f"only-{unique}"})

    assert typo.status_code == 422
    detail = typo.json()["detail"]
    assert "GET /api/v1/runs has no query parameter 'labels'" in detail
    assert "did you mean 'labels' → 'label'?" in detail
    assert "it takes: " in detail and "flow_id" in detail and "limit" in detail
    # the right name filters as before
    page = api.get("/runs", params={"label": f"only-{unique}"}).json()
    assert [r["id"] for r in page["flow_runs"]] == [labelled["id"]]


def test_every_unknown_name_is_listed(api: httpx.Client, unique: str) -> None:
    answer = api.get("/runs", params={"zzz": "1", "state": "Scheduled", "yyy": "2"})
    assert answer.status_code == 422
    assert "has no query parameters 'yyy', 'zzz'" in answer.json()["detail"]


def test_a_route_without_query_parameters_refuses_any(api: httpx.Client, unique: str) -> None:
    project(api, f"n-{unique}")
    flow_id = register(api, f"n-{unique}", "etl")
    created = api.post("/runs", params={"dry_run": "true"}, json={"flow_id": flow_id})
    assert created.status_code == 422
    detail = created.json()["detail"]
    assert "POST /api/v1/runs has no query parameter 'dry_run'" in detail and "(it takes: none)" in detail
    # nothing was created by the refused request
    assert api.get("/runs", params={"flow_id": flow_id}).json()["total"] == 0
    one = run(api, flow_id)
    path_route = api.get(f"/runs/{one['id']}", params={"verbose": "1"})
    assert path_route.status_code == 422
    assert f"GET /api/v1/runs/{one['id']} has no query parameter 'verbose'" in path_route.json()["detail"]
    assert api.get(f"/runs/{one['id']}").status_code == 200


def test_every_route_in_the_openapi_document_refuses_an_unknown_name(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    checked = []
    for template, operations in paths.items():
        path = re.sub(r"\{[^}]+\}", "x", template).removeprefix("/api/v1")
        for method in operations:
            answer = api.request(method.upper(), path, params={"zz_unknown": "1"})
            assert answer.status_code == 422, (method, template, answer.text)
            assert "has no query parameter 'zz_unknown'" in answer.json()["detail"], (method, template)
            checked.append((method, template))
    assert len(checked) >= 20  # the document really listed the routes
