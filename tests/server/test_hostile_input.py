"""Bad input gets a clear 4xx before anything is stored, and never a 5xx: on a live server, SQLite and PostgreSQL.

JSON bodies are parsed strictly (``server/routing.py``); the schemas bound what a
database column can hold; writes that make no sense for a finished run are 409.
``docs/limits.md`` is the user's side.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from .helpers import project, register, run

JSON = {"content-type": "application/json"}


def raw(api: httpx.Client, path: str, text: str | bytes) -> httpx.Response:
    """POST a body as given (httpx's json= would refuse NaN and lone surrogates)."""
    return api.post(path, content=text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text,
                    headers=JSON)


def detail(response: httpx.Response) -> str:
    """The error's detail, after checking the body is JSON that any client can decode."""
    body = json.loads(response.content.decode("utf-8"))  # strict UTF-8: no lone surrogate got into it
    return str(body["detail"])


@pytest.fixture
def flow(api: httpx.Client, unique: str) -> str:
    project(api, f"p-{unique}")
    return register(api, f"p-{unique}", f"f-{unique}", labels=[f"l-{unique}"])


@pytest.mark.parametrize(
    ("literal", "said"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "1e400"), ("-1e400", "-1e400")],
)
def test_numbers_json_cannot_hold_are_refused(api: httpx.Client, literal: str, said: str) -> None:
    response = raw(api, "/work/claim", f'{{"agent_id": "a", "wait": {literal}}}')
    assert response.status_code == 422, response.text
    assert said in detail(response) and "$.wait" in detail(response)


def test_nan_parameters_are_refused_not_stored_as_null(api: httpx.Client, flow: str) -> None:
    response = raw(api, "/runs", f'{{"flow_id": "{flow}", "parameters": {{"x": NaN}}}}')
    assert response.status_code == 422, response.text
    assert "$.parameters.x" in detail(response)


def test_integers_past_what_a_database_holds_are_refused(api: httpx.Client, flow: str) -> None:
    created = run(api, flow)
    too_big = raw(api, f"/runs/{created['id']}/task_runs",
                  f'{{"task_runs": [{{"task_slug": "a", "state": "Running", "attempts": {10**30}}}]}}')
    assert too_big.status_code == 422, too_big.text
    assert "$.task_runs[0].attempts" in detail(too_big)
    # within JSON's range but past a 32-bit column: the schema's bound says so
    past_column = api.post(f"/runs/{created['id']}/task_runs",
                           json={"task_runs": [{"task_slug": "a", "state": "Running", "attempts": 2**40}]})
    assert past_column.status_code == 422, past_column.text
    stale = api.post(f"/runs/{created['id']}/state", json={"state": "Running", "version": 2**40})
    assert stale.status_code == 422, stale.text
    huge = raw(api, "/runs", f'{{"flow_id": "{flow}", "parameters": {{"x": {"9" * 5000}}}}}')
    assert huge.status_code == 422 and "5000 digits" in detail(huge), huge.text


def test_lone_surrogates_are_refused_anywhere(api: httpx.Client, flow: str, unique: str) -> None:
    for body in (
        f'{{"flow_id": "{flow}", "parameters": {{"x": "a\\ud800b"}}}}',
        f'{{"flow_id": "{flow}", "parameters": {{"x": {{"\\udc00": 1}}}}}}',
        f'{{"flow_id": "{flow}", "run_name": "\\ud800"}}',
    ):
        response = raw(api, "/runs", body)
        assert response.status_code == 422, response.text
        assert "surrogate" in detail(response), response.text
    # a surrogate pair is a character, and is kept
    paired = raw(api, "/runs", f'{{"flow_id": "{flow}", "parameters": {{"x": "\\ud83d\\ude00"}}}}')
    assert paired.status_code == 201, paired.text
    assert paired.json()["parameters"] == {"x": "\U0001f600"}
    listed = api.get("/runs", params={"label": f"l-{unique}"})
    assert listed.status_code == 200, listed.text
    assert [r["parameters"] for r in listed.json()["flow_runs"]] == [{"x": "\U0001f600"}]
    # UTF-8-encoded surrogates are not UTF-8
    bad = raw(api, "/runs", f'{{"flow_id": "{flow}", "run_name": "'.encode() + b'\xed\xa0\x80"}')
    assert bad.status_code == 422 and "UTF-8" in detail(bad), bad.text


def test_deep_nesting_is_refused(api: httpx.Client, flow: str) -> None:
    for depth in (300, 31, 100_000):
        nested = "[" * depth + "]" * depth
        response = raw(api, "/runs", f'{{"flow_id": "{flow}", "parameters": {{"x": {nested}}}}}')
        assert response.status_code == 422, response.text[:300]
        assert "deeper than 32 levels" in detail(response)
    nested = "[" * 29 + "]" * 29  # the body, parameters and x make 32 levels
    assert raw(api, "/runs", f'{{"flow_id": "{flow}", "parameters": {{"x": {nested}}}}}').status_code == 201


@pytest.mark.parametrize(
    "query", [b"flow_name=%ED%A0%80", b"label=%00", b"state=%FF%FE", b"since=9999-12-31T23:59:59-14:00"]
)
def test_odd_query_values_are_not_server_errors(api: httpx.Client, query: bytes) -> None:
    response = api.get(httpx.URL(f"{api.base_url}runs", query=query))
    assert response.status_code in (200, 422), response.text


def test_timestamps_utc_cannot_hold_are_refused(api: httpx.Client, flow: str) -> None:
    response = api.post("/runs", json={"flow_id": flow, "scheduled_start_time": "9999-12-31T23:59:59-14:00"})
    assert response.status_code == 422, response.text
    assert "years 1-9999" in detail(response)


def test_a_task_state_must_be_one_the_engine_has(api: httpx.Client, flow: str) -> None:
    created = run(api, flow)
    bogus = {"task_runs": [{"task_slug": "a", "state": "Bogus!!"}]}
    response = api.post(f"/runs/{created['id']}/task_runs", json=bogus)
    assert response.status_code == 422, response.text
    assert "'Bogus!!'" in detail(response) and "Success" in detail(response) and "Retrying" in detail(response)


def test_label_counts_are_bounded(api: httpx.Client, flow: str) -> None:
    many = [f"l{i}" for i in range(101)]
    response = api.post("/runs", json={"flow_id": flow, "labels": many})
    assert response.status_code == 422, response.text
    assert "100" in detail(response)
    claim = api.post("/work/claim", json={"agent_id": "nobody", "labels": [f"l{i}" for i in range(100_000)]})
    assert claim.status_code == 422, claim.text[:300]
    filters = api.get("/runs", params={"label": [f"l{i}" for i in range(21)]})
    assert filters.status_code == 422 and "at most 20 label filters" in detail(filters), filters.text
    assert api.get("/runs", params={"label": [f"l{i}" for i in range(20)]}).status_code == 200


def test_label_filters_need_every_label(api: httpx.Client, flow: str, unique: str) -> None:
    both = run(api, flow, labels=[f"a-{unique}", f"b-{unique}"])
    run(api, flow, labels=[f"a-{unique}"])
    listed = api.get("/runs", params={"label": [f"a-{unique}", f"b-{unique}", f"a-{unique}"]})
    assert [r["id"] for r in listed.json()["flow_runs"]] == [both["id"]]
    assert listed.json()["total"] == 1
    assert api.get("/runs", params={"label": [f"a-{unique}"]}).json()["total"] == 2


def finished_run(api: httpx.Client, flow: str) -> dict[str, Any]:
    created = run(api, flow)
    cancelled = api.post(f"/runs/{created['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "Cancelled", cancelled.text
    return dict(cancelled.json())


def test_a_finished_run_takes_no_heartbeat(api: httpx.Client, flow: str) -> None:
    finished = finished_run(api, flow)
    response = api.post(f"/runs/{finished['id']}/heartbeat")
    assert response.status_code == 409, response.text
    assert "Cancelled" in detail(response) and "finished" in detail(response)
    assert api.get(f"/runs/{finished['id']}").json()["heartbeat"] is None


def test_a_finished_run_takes_no_task_run_states(api: httpx.Client, flow: str) -> None:
    finished = finished_run(api, flow)
    response = api.post(f"/runs/{finished['id']}/task_runs",
                        json={"task_runs": [{"task_slug": "double", "state": "Success"}]})
    assert response.status_code == 409, response.text
    assert "finished" in detail(response)
    assert api.get(f"/runs/{finished['id']}/task_runs").json() == []
