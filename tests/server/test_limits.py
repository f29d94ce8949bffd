"""Limits on a live server: request and parameter sizes (413), PostgreSQL's statement timeout (503), a full disk.

A full disk is real: the SQLite database lives on a small tmpfs, and on PostgreSQL
the runs' table is moved into a tablespace on one (mounting needs root, which CI
and this machine have; elsewhere those tests skip saying so). ``docs/limits.md``
is the user's side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from .helpers import metadata, project, register, run
from .live import LiveServer

MB = 1_000_000


def test_bodies_over_the_size_limit_are_413(api: httpx.Client, unique: str) -> None:
    project(api, f"p-{unique}")
    flow = register(api, f"p-{unique}", f"f-{unique}")
    created = run(api, flow)
    big = "a" * (10 * MB)
    attempts = [
        api.post("/runs", json={"flow_id": flow, "parameters": {"x": big}}),
        api.post(f"/runs/{created['id']}/logs", json={"records": [
            {"timestamp": "2024-01-01T00:00:00Z", "level": "INFO", "message": "m" * 90_000} for _ in range(112)
        ]}),
        api.post("/flows", json={"project_name": f"p-{unique}", "metadata": {**metadata(f"g-{unique}"),
                                                                              "schedule": {"x": big}}}),
    ]
    for response in attempts:
        assert response.status_code == 413, response.text[:300]
        message = response.json()["detail"]
        assert "8,388,608 bytes" in message and "server.max_request_size" in message, message
    assert "10,000,0" in attempts[0].json()["detail"]  # the size it was
    assert api.get("/flows", params={"name": f"g-{unique}"}).json() == []
    assert api.get(f"/runs/{created['id']}/logs").json()["records"] == []


def test_a_chunked_body_is_bounded_too(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        yield b'{"agent_id": "a", "labels": ["'
        for _ in range(100):
            yield b"a" * 100_000
        yield b'"]}'

    response = api.post("/work/claim", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    assert "more than 8,388,608 bytes" in response.json()["detail"]


def test_parameters_have_their_own_limit(api: httpx.Client, unique: str) -> None:
    project(api, f"p-{unique}")
    flow = register(api, f"p-{unique}", f"f-{unique}")
    response = api.post("/runs", json={"flow_id": flow, "parameters": {"x": "a" * 2 * MB}})
    assert response.status_code == 413, response.text[:300]
    assert "server.max_parameters_size" in response.json()["detail"]
    assert "1,048,576 bytes" in response.json()["detail"]
    assert api.post("/runs", json={"flow_id": flow, "parameters": {"x": "a" * 1000}}).status_code == 201


def test_the_limits_are_settings(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("sqlite", env={"HEADWATER__SERVER__MAX_REQUEST_SIZE": "4096",
                                       "HEADWATER__SERVER__MAX_PARAMETERS_SIZE": "100"})
    with httpx.Client(base_url=live.api, timeout=30) as api:
        project(api, "p")
        flow = register(api, "p", "f")
        assert api.post("/runs", json={"flow_id": flow, "parameters": {"x": "a" * 5000}}).status_code == 413
        small = api.post("/runs", json={"flow_id": flow, "parameters": {"x": "a" * 200}})
        assert small.status_code == 413 and "200" not in small.json()["detail"].split("limit")[1][:20]
        assert "limit of 100 bytes" in small.json()["detail"]
        assert api.post("/runs", json={"flow_id": flow, "parameters": {"x": 1}}).status_code == 201


# -- PostgreSQL: a statement can't run on ------------------------------------------------


def test_a_statement_past_the_timeout_is_cancelled_with_503(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("postgres", env={"HEADWATER__SERVER__STATEMENT_TIMEOUT": "1"})
    with httpx.Client(base_url=live.api, timeout=30) as api, psycopg.connect(live.database_url) as blocker:
        project(api, "p")
        run(api, register(api, "p", "f"))
        # hold the runs' table: the listing waits on the lock until the database cancels it
        blocker.execute("LOCK TABLE flow_runs IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = api.get("/runs")
        took = time.monotonic() - started
        blocker.rollback()
        assert response.status_code == 503, response.text
        assert "server.statement_timeout" in response.json()["detail"]
        assert 0.9 < took < 10, took
        assert api.get("/runs").json()["total"] == 1


def test_many_label_filters_stay_cheap(api: httpx.Client, unique: str) -> None:
    labels = [f"{unique}-{i}" for i in range(20)]
    project(api, f"p-{unique}")
    flow = register(api, f"p-{unique}", f"f-{unique}")
    for i in range(60):
        run(api, flow, labels=labels if i % 3 == 0 else labels[:-1])
    started = time.monotonic()
    page = api.get("/runs", params={"label": labels, "limit": 10})
    took = time.monotonic() - started
    assert page.status_code == 200 and page.json()["total"] == 20, page.text[:300]
    assert took < 2.0, f"20 label filters took {took:.2f}s"


# -- a full disk --------------------------------------------------------------------------


@contextmanager
def small_tmpfs(folder: Path, size: str, owner: str | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` for the block; skips when it can't be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"CAN'T MOUNT A SMALL TMPFS to fill a disk for real (needs root): {mounted.stderr.strip()}")
    try:
        if owner:
            subprocess.run(["chown", owner, str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def fill_until_full(api: httpx.Client, flow: str) -> httpx.Response:
    """Create runs with ~900 kB of parameters until the database is full; the refusal."""
    for _ in range(200):
        response = api.post("/runs", json={"flow_id": flow, "parameters": {"x": os.urandom(450_000).hex()}})
        if response.status_code != 201:
            return response
    raise AssertionError("the database never filled up")


def assert_full_then_recovers(api: httpx.Client, flow: str, ballast: Path) -> None:
    refused = fill_until_full(api, flow)
    assert refused.status_code == 503, refused.text[:500]
    assert refused.json()["detail"].startswith("database full: "), refused.text[:500]
    health = api.get("/health")
    assert health.status_code == 503 and health.json()["status"].startswith("database full"), health.text
    assert api.get("/runs", params={"limit": 1}).status_code == 200  # reads still work
    ballast.unlink()  # space again: the next write succeeds, and health says so
    again = api.post("/runs", json={"flow_id": flow, "parameters": {"x": 1}})
    assert again.status_code == 201, again.text[:500]
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text


def test_a_full_disk_answers_503_and_health_says_so_sqlite(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "6m") as disk:
        ballast = disk / "ballast"
        ballast.write_bytes(os.urandom(2 * MB))
        live = LiveServer(tmp_path, f"sqlite:///{disk / 'headwater.db'}").start()
        try:
            with httpx.Client(base_url=live.api, timeout=30) as api:
                project(api, "p")
                assert_full_then_recovers(api, register(api, "p", "f"), ballast)
        finally:
            live.stop()


def test_a_full_disk_answers_503_and_health_says_so_postgres(
    fresh_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    live = fresh_server("postgres")
    # outside the test's own folder, which the postgres user can't enter
    with small_tmpfs(Path(tempfile.mkdtemp(prefix="hw-disk-", dir="/tmp")), "6m", owner="postgres") as disk:
        space = disk / "space"
        space.mkdir()
        subprocess.run(["chown", "postgres", str(space)], check=True)
        ballast = disk / "ballast"
        ballast.write_bytes(os.urandom(2 * MB))
        name = f"small_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(live.database_url, autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE {name} LOCATION '{space}'")
            try:
                admin.execute(f"ALTER TABLE flow_runs SET TABLESPACE {name}")
                with httpx.Client(base_url=live.api, timeout=30) as api:
                    project(api, "p")
                    assert_full_then_recovers(api, register(api, "p", "f"), ballast)
            finally:
                live.stop()
                admin.execute("ALTER TABLE flow_runs SET TABLESPACE pg_default")
                admin.execute(f"DROP TABLESPACE {name}")
