"""Identical requests at the same moment, against a real PostgreSQL: an idempotent upsert or a clean 409, never a 500.

Each test sends the same request from 20 threads released together by a barrier,
in a few rounds, and counts the rows afterwards. (SQLite serializes every write
transaction, so these races can't happen there.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .helpers import metadata, project, register, run
from .live import LiveServer

THREADS = 20
ROUNDS = 5


@pytest.fixture(scope="module")
def pg_server(postgres_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("races")
    live = LiveServer(folder, str(postgres_cluster.create_database("hw_races"))).start()
    yield live
    live.stop()


@pytest.fixture
def api(pg_server: LiveServer) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with httpx.Client(base_url=pg_server.api, timeout=60, limits=limits) as client:
        yield client


def at_once(client: httpx.Client, send: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """``send`` from THREADS threads at the same moment (the client's pool gives each its connection)."""
    barrier = threading.Barrier(THREADS)
    answers: list[Any] = [None] * THREADS

    def one(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = send(client)
        except httpx.HTTPError as exc:  # a dropped connection is a failure too
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for answer in answers:
        assert isinstance(answer, httpx.Response), f"a request failed: {answer!r}"
    return answers


def statuses(answers: list[httpx.Response]) -> set[int]:
    bad = [a for a in answers if a.status_code >= 500]
    assert not bad, bad[0].text
    return {a.status_code for a in answers}


def test_identical_agent_registrations(api: httpx.Client, unique: str) -> None:
    for n in range(ROUNDS):
        name = f"agent-{unique}-{n}"
        body = {"name": name, "kind": "t", "labels": ["x"]}
        answers = at_once(api, lambda c, body=body: c.post("/agents", json=body))  # type: ignore[misc]
        assert statuses(answers) == {200}
        assert len({a.json()["id"] for a in answers}) == 1
        assert [a["name"] for a in api.get("/agents").json()].count(name) == 1


def test_identical_task_run_creations(api: httpx.Client, unique: str) -> None:
    project(api, f"p-{unique}")
    flow = register(api, f"p-{unique}", f"f-{unique}")
    for n in range(ROUNDS):
        created = run(api, flow)
        body = {"task_runs": [{"task_slug": f"t{n}", "state": "Running"}, {"task_slug": "u", "state": "Pending"}]}
        path = f"/runs/{created['id']}/task_runs"
        answers = at_once(api, lambda c, path=path, body=body: c.post(path, json=body))  # type: ignore[misc]
        assert statuses(answers) <= {200, 409}
        task_runs = api.get(f"/runs/{created['id']}/task_runs").json()
        assert sorted(t["task_slug"] for t in task_runs) == sorted([f"t{n}", "u"])


def test_identical_flow_registrations(api: httpx.Client, unique: str) -> None:
    project(api, f"p-{unique}")
    for n in range(ROUNDS):
        body = {"project_name": f"p-{unique}", "metadata": metadata(f"f-{unique}-{n}"), "labels": []}
        answers = at_once(api, lambda c, body=body: c.post("/flows", json=body))  # type: ignore[misc]
        assert statuses(answers) <= {200, 201, 409}
        assert sum(a.status_code == 201 for a in answers) == 1
        versions = api.get("/flows", params={"project_name": f"p-{unique}", "name": f"f-{unique}-{n}"}).json()
        assert [v["version"] for v in versions] == [1]


def test_identical_project_creations(api: httpx.Client, unique: str) -> None:
    for n in range(ROUNDS):
        name = f"p-{unique}-{n}"
        answers = at_once(api, lambda c, name=name: c.post("/projects", json={"name": name}))  # type: ignore[misc]
        assert statuses(answers) <= {201, 409}
        assert sum(a.status_code == 201 for a in answers) == 1
        assert [p["name"] for p in api.get("/projects").json()].count(name) == 1
