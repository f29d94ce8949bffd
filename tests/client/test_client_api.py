"""Every Client method against a live server process."""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path

import pytest

from headwater.client import Client, ConflictError, NotFoundError
from headwater.core.state import Failed, Running
from headwater.schemas.flow_runs import FlowRun

from .flows import make_flow
from .live import LiveServer, drive_in_thread, unique


def test_health(client: Client) -> None:
    health = client.health()
    assert (health.status, health.database) == ("ok", "sqlite")


def test_settings_give_url_and_token(live_server: LiveServer, settings_env) -> None:
    settings_env(API__URL=live_server.url + "/", API__TOKEN="hw_secret")
    with Client() as client:
        assert client.api_url == f"{live_server.url}/api/v1"
        assert client._http._http.headers["authorization"] == "Bearer hw_secret"
        assert client.health().status == "ok"  # auth is off: the token is ignored
    with Client(live_server.url + "/api/v1", api_token="") as client:
        assert "authorization" not in client._http._http.headers


def test_projects(client: Client) -> None:
    name = unique("project")
    project_id = client.create_project(name)
    listed = {p.name: p for p in client.list_projects()}
    assert listed[name].id == project_id and listed[name].flow_count == 0
    client.delete_project(project_id)
    assert name not in {p.name for p in client.list_projects()}
    with pytest.raises(NotFoundError, match="not found"):
        client.delete_project(project_id)


def test_flows(client: Client, project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow_id = client.register(make_flow("etl", tmp_path, labels=["dev"]), project, labels=["gpu"])
    assert f"Flow 'etl' registered: id {flow_id}, version 1, labels ['dev', 'gpu']" in capsys.readouterr().out
    [listed] = client.list_flows(project_name=project)
    assert (listed.id, listed.name, listed.version, listed.labels) == (flow_id, "etl", 1, ["dev", "gpu"])
    assert client.list_flows(project_name=project, name="other") == []
    detail = client.get_flow(flow_id)
    assert detail.metadata.storage is not None and detail.metadata.storage["kind"] == "local"
    assert [p.name for p in detail.parameters] == ["x"]
    assert client.archive_flow(flow_id).archived
    assert client.list_flows(project_name=project) == []
    assert [f.id for f in client.list_flows(project_name=project, include_archived=True)] == [flow_id]
    with pytest.raises(ConflictError, match="archived"):
        client.create_flow_run(flow_id)


def test_register_flow_metadata(client: Client, project: str) -> None:
    metadata = make_flow("raw").serialize()
    first = client.register_flow_metadata(project, metadata, labels=["a"])
    again = client.register_flow_metadata(project, metadata, labels=["a"])
    assert first.created and not again.created and first.id == again.id


@pytest.fixture
def flow_id(client: Client, project: str, tmp_path: Path) -> str:
    return client.register(make_flow("etl", tmp_path), project)


def test_create_and_get_flow_run(client: Client, project: str, flow_id: str) -> None:
    label = unique("label")
    when = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    run_id = client.create_flow_run(
        flow_id, parameters={"x": 21}, labels=[label], run_name="nightly", scheduled_start_time=when
    )
    run = client.get_flow_run(run_id)
    assert isinstance(run, FlowRun)
    assert (run.id, run.flow_id, run.state) == (run_id, flow_id, "Scheduled")
    assert (run.labels, run.parameters) == ([label], {"x": 21})
    assert (run.run_name, run.scheduled_start_time, run.agent_id, run.version) == ("nightly", when, None, 1)
    by_name = client.create_flow_run(project_name=project, flow_name="etl")
    assert client.get_flow_run(by_name).labels == []  # the flow version's labels (none)


def test_idempotency_key(client: Client, flow_id: str) -> None:
    first = client.create_flow_run(flow_id, idempotency_key="k1")
    assert client.create_flow_run(flow_id, idempotency_key="k1") == first
    assert client.create_flow_run(flow_id, idempotency_key="k2") != first


def test_list_flow_runs(client: Client, project: str, flow_id: str) -> None:
    label = unique("label")
    ids = [client.create_flow_run(flow_id, labels=[label, "common"]) for _ in range(3)]
    client.cancel_flow_run(ids[0])
    runs = client.list_flow_runs(project_name=project)
    assert {r.id for r in runs} == set(ids)
    assert [r.id for r in client.list_flow_runs(label=label, state="Cancelled")] == [ids[0]]
    assert {r.id for r in client.list_flow_runs(label=[label, "common"], state=["Scheduled"])} == set(ids[1:])
    assert len(client.list_flow_runs(flow_name="etl", project_name=project, limit=2)) == 2
    page = client.list_flow_runs_page(flow_id=flow_id, limit=1, offset=1)
    assert (page.total, len(page.flow_runs)) == (3, 1)
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    assert client.list_flow_runs(project_name=project, since=future) == []
    with pytest.raises(TypeError, match="labels"):
        client.list_flow_runs(labels=[label])  # a typo is an error, not an ignored filter


def test_agent_claim_states_logs_task_runs(client: Client, flow_id: str) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent_id = client.register_agent(unique("agent"), "local", [label, "extra"])
    assert agent_id in {a.id for a in client.list_agents()}
    assert client.agent_heartbeat(agent_id).id == agent_id
    [claimed] = client.claim_flow_runs(agent_id, [label, "extra"], limit=5)
    assert (claimed.id, claimed.state, claimed.agent_id) == (run_id, "Submitted", agent_id)
    assert client.claim_flow_runs(agent_id, [label, "extra"]) == []
    run = client.set_flow_run_state(run_id, Running, version=claimed.version)
    assert run.state == "Running" and run.start_time is not None
    assert client.heartbeat_flow_run(run_id).heartbeat is not None
    assert client.write_logs(run_id, [{"message": f"line {i}", "task_slug": "double-1"} for i in range(5)],
                             batch_size=2) == 5  # fmt: skip
    logs = client.get_flow_run_logs(run_id)
    assert [r.message for r in logs] == [f"line {i}" for i in range(5)]
    assert logs[0].level == "INFO" and logs[0].timestamp.tzinfo is not None
    assert [r.message for r in client.get_flow_run_logs(run_id, offset=3)] == ["line 3", "line 4"]
    task_runs = client.set_task_run_states(run_id, [{"task_slug": "double-1", "state": "Running"}])
    assert [t.state for t in task_runs] == ["Running"]
    client.set_task_run_states(run_id, [{"task_slug": "double-1", "state": "Success", "attempts": 1},
                                        {"task_slug": "x", "state": "Success"}])  # fmt: skip
    assert {t.task_slug: t.state for t in client.get_task_runs(run_id)} == {"double-1": "Success", "x": "Success"}
    run = client.set_flow_run_state(run_id, Failed("task 'double-1' failed"))
    assert (run.state, run.state_message) == ("Failed", "task 'double-1' failed")


def test_long_poll_claim_answers_when_a_run_appears(client: Client, flow_id: str) -> None:
    label = unique("label")
    agent_id = client.register_agent(unique("agent"), "local", [label])
    timer = threading.Timer(0.3, lambda: client.create_flow_run(flow_id, labels=[label]))
    start = time.monotonic()
    timer.start()
    claimed = client.claim_flow_runs(agent_id, [label], wait=20)
    assert len(claimed) == 1 and time.monotonic() - start < 10


def test_cancel_and_explain(client: Client, flow_id: str) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    client.register_agent(unique("fits"), "local", [label, "gpu"])
    client.register_agent(unique("lacks"), "local", ["gpu"])
    verdict = client.explain_flow_run(run_id)
    assert isinstance(verdict, dict) and verdict["matched"] and verdict["labels"] == [label]
    mine = [a for a in verdict["agents"] if label in a["labels"] or a["labels"] == ["gpu"]]
    assert {a["can_run"] for a in mine} == {True, False}
    assert any(a["missing_labels"] == [label] for a in mine)
    assert client.cancel_flow_run(run_id).state == "Cancelled"


def test_wait_for_flow_run(client: Client, flow_id: str) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    driver = drive_in_thread(client, run_id, [label], delay=0.1)
    run = client.wait_for_flow_run(run_id, timeout=30)
    driver.join()
    assert run.state == "Success" and run.end_time is not None
    assert [r.message for r in client.get_flow_run_logs(run_id)] == ["extract done", "load done"]


def test_wait_for_flow_run_times_out(client: Client, flow_id: str) -> None:
    run_id = client.create_flow_run(flow_id, labels=[unique("nobody")])
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=f"flow run {run_id} .* is still Scheduled after 0.3s"):
        client.wait_for_flow_run(run_id, timeout=0.3)
    assert time.monotonic() - start < 5


def test_create_token_needs_no_auth_when_auth_is_off(client: Client) -> None:
    created = client.create_token("ci", "agent")
    assert created.scope == "agent" and created.token.startswith("hw_")
