"""What the client does when things go wrong: 4xx errors by type with the server's message, and retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from headwater.client import (
    ApiConnectionError,
    ApiError,
    Client,
    ClientError,
    ConflictError,
    NotFoundError,
    ServerError,
    TooLargeError,
    ValidationError,
)

from .flows import make_flow
from .live import LiveServer, free_port, unique


@pytest.fixture
def flow_id(client: Client, project: str, tmp_path: Path) -> str:
    return client.register(make_flow("etl", tmp_path), project)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_flow_run("no-such-run"),
        lambda c: c.get_flow("no-such-flow"),
        lambda c: c.get_flow_run_logs("no-such-run"),
        lambda c: c.get_task_runs("no-such-run"),
        lambda c: c.explain_flow_run("no-such-run"),
        lambda c: c.cancel_flow_run("no-such-run"),
        lambda c: c.agent_heartbeat("no-such-agent"),
        lambda c: c.claim_flow_runs("no-such-agent", ["x"]),
        lambda c: c.create_flow_run("no-such-flow"),
    ],
)
def test_unknown_ids_are_404(client: Client, call) -> None:
    with pytest.raises(NotFoundError, match=r"'no-such-\w+' not found \(HTTP 404 from \w+ /api/v1/") as info:
        call(client)
    assert info.value.status_code == 404 and isinstance(info.value, ClientError)


def test_ids_stay_one_path_segment(client: Client) -> None:
    with pytest.raises(NotFoundError, match=r"GET /api/v1/runs/\.\.%2Fprojects"):
        client.get_flow_run("../projects")  # not GET /api/v1/projects


def test_duplicate_project_is_409(client: Client, project: str) -> None:
    with pytest.raises(ConflictError, match=f"project '{project}' already exists") as info:
        client.create_project(project)
    assert info.value.detail == f"project '{project}' already exists"


def test_bad_transition_and_stale_version_are_409(client: Client, flow_id: str) -> None:
    run_id = client.create_flow_run(flow_id, labels=[unique("l")])
    with pytest.raises(ConflictError, match="can't move from Scheduled to Running"):
        client.set_flow_run_state(run_id, "Running")
    with pytest.raises(ConflictError, match=r"is at version 1 .* not 7: someone else changed it"):
        client.set_flow_run_state(run_id, "Cancelled", version=7)
    client.set_flow_run_state(run_id, "Cancelled", version=1)
    with pytest.raises(ConflictError, match="none: it is finished"):
        client.set_flow_run_state(run_id, "Failed")
    with pytest.raises(ValidationError, match="'Bogus' is not a flow-run state"):
        client.set_flow_run_state(run_id, "Bogus")
    with pytest.raises(TypeError, match="a state is a name"):
        client.set_flow_run_state(run_id, 3)


def test_bad_parameters_are_422_naming_them(client: Client, flow_id: str) -> None:
    with pytest.raises(ValidationError, match=r"has no parameter\(s\) 'nope', 'y'; its parameters are: x") as info:
        client.create_flow_run(flow_id, parameters={"nope": 1, "y": 2})
    assert info.value.status_code == 422


def test_invalid_labels_are_422_naming_the_field(client: Client, flow_id: str) -> None:
    with pytest.raises(ValidationError, match=r"invalid request: labels: .*non-empty strings") as info:
        client.create_flow_run(flow_id, labels=["ok", "  "])
    assert info.value.fields == ["labels"]
    with pytest.raises(ValidationError, match="labels") as info:
        client.register_agent(unique("agent"), "local", [""])
    assert info.value.fields == ["labels"]


def test_schema_errors_are_422_naming_fields(client: Client) -> None:
    with pytest.raises(ValidationError, match="name") as info:
        client.create_project("")
    assert info.value.fields == ["name"]
    with pytest.raises(ValidationError, match="give flow_id, or both project_name and flow_name"):
        client.create_flow_run(project_name="p")
    with pytest.raises(ValidationError, match="wait") as info:
        client.claim_flow_runs("a", ["x"], wait=10_000)
    assert info.value.fields == ["wait"]
    with pytest.raises(ValueError, match="parameters must be JSON values"):
        client.create_flow_run("f", parameters={"x": object()})


def test_unknown_project_or_flow_names_the_fix(client: Client) -> None:
    name = unique("nowhere")
    with pytest.raises(NotFoundError, match=f"create it with `headwater create project {name}`"):
        client.create_flow_run(project_name=name, flow_name="etl")


def test_too_large_log_batch_is_413(client: Client, flow_id: str) -> None:
    run_id = client.create_flow_run(flow_id, labels=[unique("l")])
    records = [{"message": "m"}] * 1001
    with pytest.raises(TooLargeError, match="at most 1000 records"):
        client.write_logs(run_id, records, batch_size=2000)
    assert client.write_logs(run_id, records) == 1001  # default batches fit the default limit


def test_closed_port_fails_clearly_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, tries=3, backoff=0.01) as client, pytest.raises(ApiConnectionError) as info:
        client.health()
    message = str(info.value)
    assert f"can't reach the headwater API at {url}/api/v1" in message
    assert "after 3 tries" in message and "headwater server start" in message
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, ApiError)


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="HEADWATER__API__URL"):
        Client("127.0.0.1:4200")


def test_retries_until_a_late_server_answers(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "late")
    started: list[float] = []
    threading.Timer(0.3, lambda: (started.append(time.monotonic()), server.start())).start()
    try:
        with Client(server.url, tries=10, backoff=0.1) as client:
            assert client.health().status == "ok"  # retried while the server was starting
        assert started
    finally:
        deadline = time.monotonic() + 30
        while server.process is None and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()


class _Scripted(BaseHTTPRequestHandler):
    """Answers GETs with the statuses in ``server.script``, in order (then 200)."""

    def do_GET(self) -> None:
        script: list[int] = self.server.script  # type: ignore[attr-defined]
        self.server.seen += 1  # type: ignore[attr-defined]
        status = script.pop(0) if script else 200
        body = json.dumps({"status": "ok", "version": "x", "database": "sqlite"} if status == 200
                          else {"detail": f"scripted {status}"}).encode()  # fmt: skip
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.script, server.seen = [], 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_5xx_is_retried(scripted: ThreadingHTTPServer) -> None:
    scripted.script[:] = [503, 500]  # type: ignore[attr-defined]
    with Client(_url(scripted), tries=4, backoff=0.01) as client:
        assert client.health().status == "ok"
    assert scripted.seen == 3  # type: ignore[attr-defined]


def test_5xx_gives_up_after_the_tries(scripted: ThreadingHTTPServer) -> None:
    scripted.script[:] = [502] * 10  # type: ignore[attr-defined]
    with Client(_url(scripted), tries=3, backoff=0.01) as client, pytest.raises(ServerError, match="scripted 502"):
        client.health()
    assert scripted.seen == 3  # type: ignore[attr-defined]


def test_4xx_is_not_retried(scripted: ThreadingHTTPServer) -> None:
    scripted.script[:] = [404, 404]  # type: ignore[attr-defined]
    with Client(_url(scripted), tries=4, backoff=0.01) as client, pytest.raises(NotFoundError, match="scripted 404"):
        client.health()
    assert scripted.seen == 1  # type: ignore[attr-defined]
