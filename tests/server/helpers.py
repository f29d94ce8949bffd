"""Small builders the server tests share."""

from __future__ import annotations

from typing import Any

import httpx

from headwater import Flow, Parameter, task


@task
def double(x: int) -> int:
    return 2 * x


def metadata(name: str, labels: list[str] | None = None, required: bool = False) -> dict[str, Any]:
    """Flow metadata as ``flow.serialize()`` makes it, with a parameter ``x``."""
    with Flow(name) as flow:
        double(Parameter("x", default=None if required else 1, required=required))
    md = flow.serialize()
    md["labels"] = labels or []
    return md


def project(api: httpx.Client, name: str) -> str:
    response = api.post("/projects", json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def register(api: httpx.Client, project_name: str, name: str, labels: list[str] | None = None) -> str:
    response = api.post("/flows", json={"project_name": project_name, "metadata": metadata(name),
                                        "labels": labels or []})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def run(api: httpx.Client, flow_id: str, **body: Any) -> dict[str, Any]:
    response = api.post("/runs", json={"flow_id": flow_id, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def agent(api: httpx.Client, name: str, labels: list[str], kind: str = "test") -> str:
    response = api.post("/agents", json={"name": name, "kind": kind, "labels": labels})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])
