"""No input makes the server answer 5xx, and nothing it stores is something a later read can't serve.

Two fuzzers against a live server, on SQLite and on PostgreSQL:

* schemathesis over the server's own OpenAPI document, with its full set of checks
  but two (see ``EXCLUDED_CHECKS``);
* ``test_hostile_values``: for every string and number field of every request body,
  query and path of the OpenAPI document, a list of hostile values (a lone surrogate,
  NUL, 10k characters, NaN, Infinity, 1e400, 10**30, -1, a list 300 deep, a huge list);
  then listing, reading and claiming the good runs must still work.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from .helpers import agent, metadata, project, register, run
from .live import LiveServer

#: schemathesis checks left out, because they conflict with documented behaviour:
#: - positive_data_acceptance: some rules are not expressible in the OpenAPI document, so a
#:   schema-valid body can rightly be 422: "flow_id, or project_name and flow_name, not both",
#:   the label rule (not blank), secret names (letters, digits, single underscores).
#: - negative_data_rejection: FastAPI validates in pydantic's lax mode, documented: 0/1 for
#:   booleans, `false` for 0.0, a Unix time for a date-time query value are accepted (and
#:   normalised before anything is stored).
EXCLUDED_CHECKS = "positive_data_acceptance,negative_data_rejection"


def test_no_server_errors(fresh_server: Callable[..., LiveServer], kind: str) -> None:
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is part of the test extra; reinstall with `pip install -e .[test]`"
    live = fresh_server(kind, env={"HEADWATER__SERVER__MAX_CLAIM_WAIT": "0.5"})
    result = subprocess.run(
        [schemathesis, "run", f"{live.api}/openapi.json", "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
         "--phases", "examples,coverage,fuzzing", "--max-examples", "4", "--seed", "7", "--no-color"],
        capture_output=True, text=True, timeout=600,
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + "\n--- server log ---\n" + live.output()[-3000:]
    assert " passed" in summary and "generated" in summary


# -- hostile values for every field ------------------------------------------------------

#: JSON text put in place of a field's value.
HOSTILE_JSON = {
    "lone surrogate": '"a\\ud800b"',
    "NUL": '"a\\u0000b"',
    "10k characters": json.dumps("x" * 10_000),
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e400": "1e400",
    "10**30": str(10**30),
    "-1": "-1",
    "300-deep list": "[" * 300 + "]" * 300,
    "huge list": "[" + ",".join(["1"] * 20_000) + "]",
}
#: Query and path values, already %-encoded (a lone surrogate can only arrive as its UTF-8 bytes).
HOSTILE_QUERY = {
    "lone surrogate": "%ED%A0%80",
    "NUL": "a%00b",
    "10k characters": "x" * 10_000,
    "NaN": "NaN",
    "Infinity": "Infinity",
    "1e400": "1e400",
    "10**30": str(10**30),
    "-1": "-1",
    "300-deep list": quote("[" * 300),
}
SENTINEL = "__hostile__"


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def example(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> Any:
    """A value of ``schema`` with every property and one item per list filled in: a leaf per field."""
    schema = resolve(schema, document)
    if depth > 8:
        return None
    if "enum" in schema:
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            options = [o for o in schema[combinator] if resolve(o, document).get("type") != "null"]
            return example(options[0], document, depth + 1) if options else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if not properties and schema.get("additionalProperties") is not False:
            return {"x": "x"}
        return {name: example(prop, document, depth + 1) for name, prop in properties.items()}
    if kind == "array":
        return [example(schema.get("items") or {}, document, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return False
    if schema.get("format") == "date-time":
        return "2024-01-01T00:00:00Z"
    return "x"


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The paths of the strings and numbers in ``value``."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaves(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaves(child, (*path, index))
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield path


def with_hostile(body: Any, path: tuple[Any, ...], fragment: str) -> bytes:
    """``body`` as JSON text with the value at ``path`` replaced by the JSON text ``fragment``."""
    copy = json.loads(json.dumps(body))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = SENTINEL
    return json.dumps(copy).replace(f'"{SENTINEL}"', fragment, 1).encode("utf-8", "surrogatepass")


def test_hostile_values(fresh_server: Callable[..., LiveServer], kind: str) -> None:
    live = fresh_server(kind, env={"HEADWATER__SERVER__MAX_CLAIM_WAIT": "0.2"})
    api = httpx.Client(base_url=live.api, timeout=60, limits=httpx.Limits(max_connections=8))
    # the good data, which must still be served afterwards, and a victim for the routes that change things
    project(api, "good")
    good_flow = register(api, "good", "good", labels=["good"])
    good_runs = {run(api, good_flow)["id"] for _ in range(3)}
    good_agent = agent(api, "good-agent", ["good"])
    project(api, "victim")
    victim_flow = register(api, "victim", "victim")
    victim_run = run(api, victim_flow)["id"]
    victim_agent = agent(api, "victim-agent", [])
    path_values = {"flow_run_id": victim_run, "flow_id": victim_flow, "agent_id": victim_agent,
                   "project_id": "none", "token_id": "none", "name": "VICTIM"}
    # valid bodies where a generated one would stop at the first check
    bodies: dict[tuple[str, str], Any] = {
        ("post", "/runs"): {"flow_id": victim_flow, "parameters": {"x": "x"}, "labels": ["x"], "run_name": "x",
                            "scheduled_start_time": "2024-01-01T00:00:00Z"},
        ("post", "/flows"): {"project_name": "victim", "metadata": metadata("victim"), "labels": ["x"]},
        ("post", "/work/claim"): {"agent_id": victim_agent, "labels": ["x"], "limit": 1, "wait": 0},
        ("post", "/runs/{flow_run_id}/task_runs"): {"task_runs": [
            {"task_slug": "x", "state": "Running", "message": "x", "attempts": 1,
             "start_time": "2024-01-01T00:00:00Z", "end_time": "2024-01-01T00:00:00Z"}]},
        ("post", "/runs/{flow_run_id}/logs"): {"records": [
            {"timestamp": "2024-01-01T00:00:00Z", "level": "INFO", "message": "x", "name": "x", "task_slug": "x"}]},
    }
    document = api.get("/openapi.json").json()
    prefix = "/api/v1"
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for route, operations in document["paths"].items():
        local = route.removeprefix(prefix)
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            good_path = local
            for p in params:
                if p["in"] == "path":
                    good_path = good_path.replace("{" + p["name"] + "}", quote(path_values.get(p["name"], "x")))
            for p in params:
                for value in HOSTILE_QUERY.values():
                    if p["in"] == "query":
                        requests.append((method, good_path, {"query": f"{p['name']}={value}"}))
                    elif p["in"] == "path":
                        requests.append((method, local.replace("{" + p["name"] + "}", value), {}))
            if p_query := [p for p in params if p["in"] == "query"]:
                many = "&".join([f"{p_query[0]['name']}=x"] * 1000)
                requests.append((method, good_path, {"query": many}))
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            body = bodies.get((method, local)) or example(content["schema"], document)
            for leaf in leaves(body):
                for fragment in HOSTILE_JSON.values():
                    requests.append((method, good_path, {"content": with_hostile(body, leaf, fragment)}))
    # deletions last, so the victim is there for the rest
    requests.sort(key=lambda r: r[0] == "delete")

    def send(request: tuple[str, str, dict[str, Any]]) -> str | None:
        method, path, parts = request
        url = httpx.URL(f"{live.api}{path}", query=parts.get("query", "").encode())
        response = api.request(method.upper(), url, content=parts.get("content"),
                               headers={"content-type": "application/json"})
        if response.status_code >= 500:
            return f"{method.upper()} {path[:100]} {str(parts)[:200]} → {response.status_code} {response.text[:300]}"
        if response.headers.get("content-type", "").startswith("application/json"):
            json.loads(response.content.decode("utf-8"))  # an answer any client can decode
        return None

    with ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(send, requests) if f]
    assert not failures, f"{len(failures)} of {len(requests)} requests answered ≥ 500:\n" + "\n".join(failures[:20])
    assert len(requests) > 500

    # everything stored can be served again
    offset, seen = 0, []
    while True:
        page = api.get("/runs", params={"offset": offset, "limit": 100})
        assert page.status_code == 200, page.text[:500]
        seen += [r["id"] for r in page.json()["flow_runs"]]
        offset += 100
        if offset >= page.json()["total"]:
            break
    assert good_runs <= set(seen)
    for run_id in seen:
        for read in (f"/runs/{run_id}", f"/runs/{run_id}/task_runs", f"/runs/{run_id}/logs"):
            assert api.get(read).status_code == 200, api.get(read).text[:500]
    for read in ("/flows", "/projects", "/agents", "/health"):
        assert api.get(read).status_code == 200, api.get(read).text[:500]
    for flow in api.get("/flows").json():
        assert api.get(f"/flows/{flow['id']}").status_code == 200
    claimed = api.post("/work/claim", json={"agent_id": good_agent, "labels": ["good"], "limit": 10})
    assert claimed.status_code == 200, claimed.text[:500]
    assert {r["id"] for r in claimed.json()["flow_runs"]} == good_runs
    api.close()


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
