"""Issue 13 §2: tokens carry an identity, agents and runs belong to one, tokens can be listed, revoked and expire.

Every route is tried with every kind of credential (the 401/403 matrix), then the
ownership rules: an agent token acts only for the agents registered with it (or its
pool), so it can't write, claim for, put back, log to or heartbeat another's runs.
All against live server processes on SQLite.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import metadata
from .live import LiveServer
from .test_auth_and_startup import make_token

NOW = "2026-12-03T00:00:00+00:00"
LOGS = {"records": [{"timestamp": NOW, "level": "INFO", "message": "hi"}]}
TASKS = {"task_runs": [{"task_slug": "t-1", "state": "Running"}]}

#: Every operation of the API and the scope it needs (None: no token needed).
SCOPE = {
    ("GET", "/health"): None,
    ("GET", "/projects"): "agent",
    ("POST", "/projects"): "user",
    ("DELETE", "/projects/{project_id}"): "user",
    ("POST", "/flows"): "user",
    ("GET", "/flows"): "agent",
    ("GET", "/flows/{flow_id}"): "agent",
    ("POST", "/flows/{flow_id}/archive"): "user",
    ("POST", "/runs"): "user",
    ("POST", "/runs/batch"): "user",
    ("GET", "/runs"): "agent",
    ("GET", "/runs/{flow_run_id}"): "agent",
    ("POST", "/runs/{flow_run_id}/state"): "agent",
    ("POST", "/runs/{flow_run_id}/cancel"): "user",
    ("POST", "/runs/prune"): "user",
    ("POST", "/runs/{flow_run_id}/heartbeat"): "agent",
    ("GET", "/runs/{flow_run_id}/explain"): "agent",
    ("GET", "/runs/{flow_run_id}/states"): "agent",
    ("POST", "/runs/{flow_run_id}/task_runs"): "agent",
    ("GET", "/runs/{flow_run_id}/task_runs"): "agent",
    ("POST", "/runs/{flow_run_id}/logs"): "agent",
    ("GET", "/runs/{flow_run_id}/logs"): "agent",
    ("GET", "/agents"): "agent",
    ("POST", "/agents"): "agent",
    ("POST", "/agents/{agent_id}/heartbeat"): "agent",
    ("POST", "/work/claim"): "agent",
    ("POST", "/work/claim/release"): "agent",
    ("GET", "/tokens"): "admin",
    ("POST", "/tokens"): "admin",
    ("DELETE", "/tokens/{token_id}"): "admin",
    ("GET", "/whoami"): "agent",
    ("GET", "/secrets"): "user",
    ("PUT", "/secrets/{name}"): "user",
    ("GET", "/secrets/{name}"): "agent",
    ("DELETE", "/secrets/{name}"): "user",
}
RANK = {"agent": 1, "user": 2, "admin": 3}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """A live server with auth on, and an admin token made before it started."""
    home = tmp_path / "own"
    home.mkdir()
    live = LiveServer(home, f"sqlite:///{home / 'headwater.db'}", env={"HEADWATER__SERVER__AUTH": "true"})
    admin = make_token(live, "admin")
    live.start()
    yield live, admin
    live.stop()


def client(live: LiveServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=live.api, headers=headers, timeout=30)


def token(admin: httpx.Client, name: str, scope: str = "agent", **binding: Any) -> str:
    made = admin.post("/tokens", json={"name": name, "scope": scope, **binding})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def test_every_route_answers_each_credential_as_its_scope_says(server: tuple[LiveServer, str]) -> None:
    live, admin_token = server
    with client(live, admin_token) as admin:
        paths = admin.get("/openapi.json").json()["paths"]
        operations = {(m.upper(), p.removeprefix("/api/v1")) for p, ops in paths.items() for m in ops}
        assert operations == set(SCOPE), "a route was added or removed: give it its scope in SCOPE"
        tokens = {scope: token(admin, f"{scope}-t", scope) for scope in RANK}
        revoked = token(admin, "gone", "admin")
        revoked_id = next(t["id"] for t in admin.get("/tokens").json() if t["name"] == "gone")
        expired = token(admin, "short", "admin", expires_in=0.5)
        assert admin.delete(f"/tokens/{revoked_id}").status_code == 204
    time.sleep(1.0)
    credentials: dict[str, str | None] = {"none": None, "bad": "hw_not-a-token", "revoked": revoked,
                                          "expired": expired, **tokens}  # fmt: skip
    ids = {"project_id": "x", "flow_id": "x", "flow_run_id": "x", "agent_id": "x", "token_id": "x", "name": "X"}
    wrong = []
    callers = {label: client(live, value) for label, value in credentials.items()}
    for (method, path), needed in sorted(SCOPE.items(), key=str):
        url = path.format(**ids)
        for label, caller in callers.items():
            status = caller.request(method, url, json={} if method in ("POST", "PUT") else None).status_code
            if needed is None:
                expected_ok = True
            elif label in ("none", "bad", "revoked", "expired"):
                expected_ok = False
                if status != 401:
                    wrong.append(f"{method} {path} with a {label} token: {status}, not 401")
                continue
            else:
                expected_ok = RANK[label] >= RANK[needed]
            if expected_ok and status in (401, 403):
                wrong.append(f"{method} {path} with a {label} token: {status}, but the scope allows it")
            if not expected_ok and status != 403:
                wrong.append(f"{method} {path} with a {label} token: {status}, not 403")
    for caller in callers.values():
        caller.close()
    assert not wrong, "\n".join(wrong)


def test_an_agent_token_acts_only_for_its_own_agents(server: tuple[LiveServer, str]) -> None:
    live, admin_token = server
    with client(live, admin_token) as admin:
        one, two = token(admin, "one"), token(admin, "two")
        assert admin.post("/projects", json={"name": "p"}).status_code == 201
        flow = admin.post("/flows", json={"project_name": "p", "metadata": metadata("f"), "labels": ["x"]}).json()
        run = admin.post("/runs", json={"flow_id": flow["id"]}).json()["id"]
        scheduled = admin.post("/runs", json={"flow_id": flow["id"], "scheduled_start_time": "2099-01-01T00:00:00Z"})
    with client(live, one) as agent1, client(live, two) as agent2:
        a1 = agent1.post("/agents", json={"name": "a1", "kind": "t", "labels": ["x"]}).json()["id"]
        a2 = agent2.post("/agents", json={"name": "a2", "kind": "t", "labels": ["x", "y"]}).json()["id"]
        claimed = agent1.post("/work/claim", json={"agent_id": a1, "labels": ["x"]}).json()["flow_runs"]
        assert [r["id"] for r in claimed] == [run] and claimed[0]["attempt"] == 1
        denied = {
            "claim in agent 1's id": agent2.post("/work/claim", json={"agent_id": a1, "labels": ["x"]}),
            "claim for labels it never registered": agent2.post("/work/claim", json={"agent_id": a2, "labels": ["z"]}),
            "set it Running": agent2.post(f"/runs/{run}/state", json={"state": "Running"}),
            "set it Failed": agent2.post(f"/runs/{run}/state", json={"state": "Failed"}),
            "put it back": agent2.post(f"/runs/{run}/state", json={"state": "Scheduled"}),
            "write its logs": agent2.post(f"/runs/{run}/logs", json=LOGS),
            "send its heartbeat": agent2.post(f"/runs/{run}/heartbeat"),
            "write its task runs": agent2.post(f"/runs/{run}/task_runs", json=TASKS),
            "heartbeat agent 1": agent2.post(f"/agents/{a1}/heartbeat"),
            "release agent 1's claim": agent2.post("/work/claim/release", json={"agent_id": a1, "claim_id": "c"}),
            "take over agent 1's name": agent2.post("/agents", json={"name": "a1", "kind": "t", "labels": ["x"]}),
            "fail a run nobody holds": agent2.post(f"/runs/{scheduled.json()['id']}/state", json={"state": "Failed"}),
        }
        wrong = {what: (r.status_code, r.text) for what, r in denied.items() if r.status_code != 403}
        assert not wrong, wrong
        assert "another token" in denied["set it Running"].json()["detail"]
        # agent 1's token does all of it
        assert agent1.post(f"/runs/{run}/state", json={"state": "Running"}).status_code == 200
        assert agent1.post(f"/runs/{run}/heartbeat").status_code == 200
        assert agent1.post(f"/runs/{run}/logs", json=LOGS).status_code == 201
        assert agent1.post(f"/runs/{run}/task_runs", json=TASKS).status_code == 200
        assert agent1.post(f"/agents/{a1}/heartbeat").status_code == 200
        assert agent1.post("/work/claim/release", json={"agent_id": a1, "claim_id": "c"}).status_code == 204
    with client(live, admin_token) as admin:  # an operator may still settle any run
        assert admin.post(f"/runs/{run}/state", json={"state": "Failed", "message": "by hand"}).status_code == 200


def test_claims_fence_stale_writers(server: tuple[LiveServer, str]) -> None:
    live, admin_token = server
    with client(live, admin_token) as admin:
        agent = token(admin, "agent")
        assert admin.post("/projects", json={"name": "p"}).status_code == 201
        flow = admin.post("/flows", json={"project_name": "p", "metadata": metadata("f"), "labels": ["x"]}).json()
        run = admin.post("/runs", json={"flow_id": flow["id"]}).json()["id"]
    with client(live, agent) as api:
        agent_id = api.post("/agents", json={"name": "a", "kind": "t", "labels": ["x"]}).json()["id"]
        first = api.post("/work/claim", json={"agent_id": agent_id, "labels": ["x"], "claim_id": "c-1"}).json()
        again = api.post("/work/claim", json={"agent_id": agent_id, "labels": ["x"], "claim_id": "c-1"}).json()
        assert [r["id"] for r in again["flow_runs"]] == [r["id"] for r in first["flow_runs"]] == [run]  # a retry
        old = {"Headwater-Claim": f"{agent_id}:1"}
        put_back = api.post(f"/runs/{run}/state", json={"state": "Scheduled"}, headers=old)
        assert put_back.status_code == 200
        second = api.post("/work/claim", json={"agent_id": agent_id, "labels": ["x"], "claim_id": "c-2"}).json()
        assert second["flow_runs"][0]["attempt"] == 2
        for method, path, body in (("POST", f"/runs/{run}/state", {"state": "Running"}),
                                   ("POST", f"/runs/{run}/heartbeat", None), ("POST", f"/runs/{run}/logs", LOGS),
                                   ("POST", f"/runs/{run}/task_runs", TASKS)):  # fmt: skip
            stale = api.request(method, path, json=body, headers=old)
            assert stale.status_code == 409 and stale.headers["Headwater-Error"] == "claim-superseded", stale.text
            assert "superseded" in stale.json()["detail"] and "stop working" in stale.json()["detail"]
        current = {"Headwater-Claim": f"{agent_id}:2"}
        assert api.post(f"/runs/{run}/state", json={"state": "Running"}, headers=current).status_code == 200
        bad = api.post(f"/runs/{run}/heartbeat", headers={"Headwater-Claim": "nonsense"})
        assert bad.status_code == 422 and "<agent id>:<attempt>" in bad.json()["detail"]


def test_pools_bound_tokens_and_listing(server: tuple[LiveServer, str]) -> None:
    live, admin_token = server
    with client(live, admin_token) as admin:
        blue1, blue2 = token(admin, "b1", pool="blue"), token(admin, "b2", pool="blue")
        solo = token(admin, "solo", agent="solo")
        bad = admin.post("/tokens", json={"name": "x", "scope": "user", "pool": "blue"})
        assert bad.status_code == 422 and "only with scope 'agent'" in bad.text
        listed = admin.get("/tokens").json()
        assert {t["name"]: (t["scope"], t["pool"], t["agent"]) for t in listed if t["name"] != "admin-token"} == {
            "b1": ("agent", "blue", None), "b2": ("agent", "blue", None), "solo": ("agent", None, "solo")}
        assert all("token" not in t for t in listed)
        assert admin.post("/projects", json={"name": "p"}).status_code == 201
        flow = admin.post("/flows", json={"project_name": "p", "metadata": metadata("f"), "labels": ["x"]}).json()
        run = admin.post("/runs", json={"flow_id": flow["id"]}).json()["id"]
    with client(live, blue1) as one, client(live, blue2) as two, client(live, solo) as alone:
        agent_id = one.post("/agents", json={"name": "pooled", "kind": "t", "labels": ["x"]}).json()["id"]
        assert two.post("/work/claim", json={"agent_id": agent_id, "labels": ["x"]}).json()["flow_runs"]
        assert one.post(f"/runs/{run}/state", json={"state": "Running"}).status_code == 200  # the pool's run
        other = alone.post("/agents", json={"name": "other", "kind": "t", "labels": ["x"]})
        assert other.status_code == 403 and "--name solo" in other.json()["detail"]
        assert alone.post("/agents", json={"name": "solo", "kind": "t", "labels": ["x"]}).status_code == 200
        assert alone.post(f"/runs/{run}/heartbeat").status_code == 403


def test_revocation_holds_on_the_next_request_on_every_server(server: tuple[LiveServer, str], tmp_path: Path) -> None:
    live, admin_token = server
    twin = LiveServer(live.home, live.database_url, env={"HEADWATER__SERVER__AUTH": "true"}).start()
    try:
        with client(live, admin_token) as admin:
            doomed = token(admin, "doomed-admin", "admin")
            with client(twin, doomed) as elsewhere:
                assert elsewhere.get("/tokens").status_code == 200  # seen (and formerly cached) on the twin
                doomed_id = next(t["id"] for t in admin.get("/tokens").json() if t["name"] == "doomed-admin")
                assert admin.delete(f"/tokens/{doomed_id}").status_code == 204
                minted = elsewhere.post("/tokens", json={"name": "sneaky", "scope": "admin"})
                assert minted.status_code == 401 and "revoked" in minted.json()["detail"]
            assert admin.delete(f"/tokens/{doomed_id}").status_code == 404
    finally:
        twin.stop()


def test_project_scoped_secrets_are_read_only_for_held_runs(server: tuple[LiveServer, str]) -> None:
    live, admin_token = server
    with client(live, admin_token) as admin:
        agent = token(admin, "agent")
        for name in ("p1", "p2"):
            assert admin.post("/projects", json={"name": name}).status_code == 201
        flow = admin.post("/flows", json={"project_name": "p1", "metadata": metadata("f"), "labels": ["x"]}).json()
        assert admin.put("/secrets/SCOPED", json={"value": "s3cret", "projects": ["p1"]}).status_code == 201
        assert admin.put("/secrets/OTHER", json={"value": "s3cret", "projects": ["p2"]}).status_code == 201
        assert admin.put("/secrets/OPEN", json={"value": "s3cret"}).status_code == 201
        run = admin.post("/runs", json={"flow_id": flow["id"]}).json()["id"]
    with client(live, agent) as api:
        assert api.get("/secrets/OPEN").status_code == 200
        early = api.get("/secrets/SCOPED")
        assert early.status_code == 403 and "p1" in early.json()["detail"]
        agent_id = api.post("/agents", json={"name": "a", "kind": "t", "labels": ["x"]}).json()["id"]
        claimed = api.post("/work/claim", json={"agent_id": agent_id, "labels": ["x"]}).json()["flow_runs"]
        assert [r["id"] for r in claimed] == [run]
        assert api.get("/secrets/SCOPED").json()["value"] == "s3cret"
        assert api.get("/secrets/OTHER").status_code == 403
        assert api.post(f"/runs/{run}/state", json={"state": "Failed"}).status_code == 200
        assert api.get("/secrets/SCOPED").status_code == 403  # no longer held


def test_the_token_commands(server: tuple[LiveServer, str]) -> None:
    live, admin_token = server

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**live.env, "HEADWATER__API__URL": live.url, "HEADWATER__API__TOKEN": admin_token}
        return subprocess.run([sys.executable, "-m", "headwater.cli", *args], capture_output=True, text=True,
                              env=env, timeout=60)  # fmt: skip

    made = cli("server", "create-token", "--scope", "agent", "--name", "blue-1", "--pool", "blue",
               "--expires-in", "30d", "--database", live.database_url)  # fmt: skip
    assert made.returncode == 0 and made.stdout.startswith("hw_"), made.stderr
    wrong = cli("server", "create-token", "--scope", "user", "--pool", "blue", "--database", live.database_url)
    assert wrong.returncode == 2 and "only with scope 'agent'" in wrong.stderr
    assert cli("token", "create", "--scope", "agent", "--name", "solo", "--agent", "solo").returncode == 0
    listed = cli("token", "ls")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1]: line for line in listed.stdout.splitlines()[1:]}
    assert "pool blue" in lines["blue-1"] and "agent solo" in lines["solo"] and "never" in lines["solo"]
    assert made.stdout.strip() not in listed.stdout
    assert cli("token", "revoke", "blue-1").returncode == 0
    gone = httpx.get(f"{live.api}/agents", headers={"Authorization": f"Bearer {made.stdout.strip()}"})
    assert gone.status_code == 401
    missing = cli("token", "revoke", "nope")
    assert missing.returncode == 2 and "headwater token ls" in missing.stderr
