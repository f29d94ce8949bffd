"""Auth scopes over a live server, and clear start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import metadata
from .live import LiveServer, free_port


def make_token(live: LiveServer, scope: str) -> str:
    """A token of ``scope`` made in ``live``'s database, in this process (as ``server create-token`` does;
    the command itself is tested in ``test_ownership.py``): a process of its own would cost seconds."""
    from headwater.config.settings import ServerSettings
    from headwater.server.serve import make_token as create

    live.home.mkdir(parents=True, exist_ok=True)
    return create(ServerSettings(database_url=live.database_url), live.home, f"{scope}-token", scope).token


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A server on 127.0.0.1 with auth turned on, and a token of each scope made before it starts."""
    home = tmp_path / "auth"
    home.mkdir()
    live = LiveServer(home, f"sqlite:///{home / 'headwater.db'}", env={"HEADWATER__SERVER__AUTH": "true"})
    tokens = {scope: make_token(live, scope) for scope in ("agent", "user", "admin")}
    live.start()
    yield live, tokens
    live.stop()


def test_scopes(auth_server: tuple[LiveServer, dict[str, str]]) -> None:
    live, tokens = auth_server

    def as_(scope: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {tokens[scope]}"} if scope else {}
        return httpx.Client(base_url=live.api, headers=headers, timeout=30)

    with as_(None) as anonymous, as_("agent") as agent, as_("user") as user, as_("admin") as admin:
        assert anonymous.get("/health").status_code == 200
        missing = anonymous.get("/projects")
        assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
        wrong = httpx.get(f"{live.api}/projects", headers={"Authorization": "Bearer hw_not-a-token"})
        assert wrong.status_code == 401
        denied = agent.post("/projects", json={"name": "p"})
        assert denied.status_code == 403 and "scope 'user'" in denied.json()["detail"]
        assert user.post("/projects", json={"name": "p"}).status_code == 201
        assert agent.post("/flows", json={"project_name": "p", "metadata": metadata("f")}).status_code == 403
        flow = user.post("/flows", json={"project_name": "p", "metadata": metadata("f"), "labels": ["x"]}).json()
        assert agent.post("/runs", json={"flow_id": flow["id"]}).status_code == 403
        run = user.post("/runs", json={"flow_id": flow["id"]}).json()
        agent_id = agent.post("/agents", json={"name": "a", "kind": "t", "labels": ["x"]}).json()["id"]
        assert agent.post("/work/claim", json={"agent_id": agent_id, "labels": ["x"]}).json()["flow_runs"]
        assert agent.post(f"/runs/{run['id']}/state", json={"state": "Running"}).status_code == 200
        assert agent.post(f"/runs/{run['id']}/heartbeat").status_code == 200
        now = "2026-11-22T00:00:00+00:00"
        logs = {"records": [{"timestamp": now, "level": "INFO", "message": "hi"}]}
        assert agent.post(f"/runs/{run['id']}/logs", json=logs).status_code == 201
        assert agent.get(f"/runs/{run['id']}").status_code == 200
        assert agent.post("/tokens", json={"name": "t", "scope": "agent"}).status_code == 403
        assert user.post("/tokens", json={"name": "t", "scope": "agent"}).status_code == 403
        made = admin.post("/tokens", json={"name": "t", "scope": "agent"})
        assert made.status_code == 201
        fresh = made.json()["token"]
        assert httpx.get(f"{live.api}/agents", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_tokens_are_stored_hashed(auth_server: tuple[LiveServer, dict[str, str]]) -> None:
    live, tokens = auth_server
    token = tokens["admin"]
    raw = (live.home / "headwater.db").read_bytes() + b"".join(
        p.read_bytes() for p in live.home.glob("headwater.db-*")
    )
    assert token.encode() not in raw
    assert httpx.get(f"{live.api}/agents", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def start_and_fail(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater.cli", "server", "start", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HEADWATER__HOME": str(home)},
    )


def test_beyond_loopback_without_tokens_refuses_to_start(tmp_path: Path) -> None:
    result = start_and_fail(["--host", "0.0.0.0", "--port", str(free_port()),
                             "--database", f"sqlite:///{tmp_path / 'x.db'}"], tmp_path)
    assert result.returncode == 2
    assert "create-token --scope admin" in result.stderr


def test_beyond_loopback_with_auth_off_refuses_to_start(tmp_path: Path) -> None:
    env_home = tmp_path
    result = subprocess.run(
        [sys.executable, "-m", "headwater.cli", "server", "start", "--host", "0.0.0.0",
         "--port", str(free_port()), "--database", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HEADWATER__HOME": str(env_home), "HEADWATER__SERVER__AUTH": "false"},
    )
    assert result.returncode == 2 and "auth turned off" in result.stderr


def test_beyond_loopback_with_a_token_starts(tmp_path: Path) -> None:
    # bind every address; the tests still talk to it over 127.0.0.1
    live = LiveServer(tmp_path / "srv", f"sqlite:///{tmp_path / 'srv' / 'x.db'}", host="0.0.0.0")
    (tmp_path / "srv").mkdir()
    token = make_token(live, "admin")
    live.start()
    try:
        assert httpx.get(f"{live.api}/projects").status_code == 401
        assert httpx.get(f"{live.api}/projects", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        live.stop()


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ("sqlite:///{tmp}/a-directory", "can't write SQLite database"),
        ("sqlite:///{tmp}/file.txt/x.db", "can't create the folder"),
        ("postgresql://postgres@127.0.0.1:{port}/nope", "does not answer"),
        ("mysql://x@127.0.0.1/db", "supports SQLite"),
        ("::not a url::", "not a URL"),
    ],
)
def test_bad_databases_are_clear_start_up_errors(tmp_path: Path, database: str, message: str) -> None:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    url = database.format(tmp=tmp_path, port=free_port())
    result = start_and_fail(["--port", str(free_port()), "--database", url], tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
