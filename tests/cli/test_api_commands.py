"""The CLI's API commands end to end through ``main([...])`` against a live server process.

``create project``, ``register``, ``run --project`` (with ``--watch``), ``get``,
``logs`` (with ``--follow``) and ``explain``; a fake agent drives runs through
the client from a thread. The server and the agent are in ``tests/client/live.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from client.live import drive_run, free_port, unique
from headwater.cli import main
from headwater.client import Client

FLOW_FILE = """
from headwater import Flow, Parameter, task

@task
def double(x):
    return 2 * x

with Flow("cli-etl") as flow:
    double(Parameter("x", default=1))
"""


@pytest.fixture
def registered(client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A project holding flow 'cli-etl', registered through the CLI; its name."""
    project = unique("project")
    path = tmp_path / "flow.py"
    path.write_text(FLOW_FILE)
    assert main(["create", "project", project]) == 0
    assert main(["register", "--project", project, str(path), "--label", "team"]) == 0
    capsys.readouterr()
    return project


def drive_when_created(client: Client, label: str, final: str) -> threading.Thread:
    """A fake agent: waits for the run labelled ``label`` to appear, then claims and finishes it."""

    def agent() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = client.list_flow_runs(label=label)
            if runs:
                drive_run(client, runs[0].id, [label], final=final, delay=0.05)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    return thread


def test_create_project(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("project")
    assert main(["create", "project", name]) == 0
    assert f"Project '{name}' created: id " in capsys.readouterr().out
    assert main(["create", "project", name]) == 2
    assert f"headwater: error: project '{name}' already exists (HTTP 409" in capsys.readouterr().err


def test_register(client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = unique("project")
    client.create_project(project)
    path = tmp_path / "flow.py"
    path.write_text(FLOW_FILE)
    assert main(["register", "--project", project, str(path), "-l", "team", "--label", "dev"]) == 0
    out = capsys.readouterr().out
    labels = sorted(["dev", "team", socket.gethostname()])
    assert f"Flow 'cli-etl' registered: id {client.list_flows(project_name=project)[0].id}, version 1, " \
           f"labels {labels}" in out  # fmt: skip
    assert main(["register", "--project", project, str(path), "-l", "team", "--label", "dev"]) == 0
    assert "version 1 (unchanged, existing version)" in capsys.readouterr().out


def test_register_errors(client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flow.py"
    path.write_text(FLOW_FILE)
    name = unique("nowhere")
    assert main(["register", "--project", name, str(path)]) == 2
    assert f"create it with `headwater create project {name}`" in capsys.readouterr().err
    assert main(["register", "--project", name, str(tmp_path / "missing.py")]) == 2
    assert "can't read flow file" in capsys.readouterr().err
    assert main(["register", "--project", name, str(path), "--label", " "]) == 2
    assert "labels must be non-empty strings" in capsys.readouterr().err


def test_run_creates_a_flow_run(client: Client, registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    label = unique("label")
    args = ["run", "--project", registered, "--name", "cli-etl", "-p", "x=5", "-l", label, "--run-name", "manual"]
    assert main(args) == 0
    out = capsys.readouterr().out
    [run] = client.list_flow_runs(label=label)
    assert f"Flow run 'manual' created: id {run.id}, labels [{label}]" in out
    assert (run.state, run.parameters, run.run_name) == ("Scheduled", {"x": 5}, "manual")
    assert main(["run", "--project", registered, "--name", "cli-etl"]) == 0  # the flow's labels
    assert "labels [" + ",".join(sorted(["team", socket.gethostname()])) + "]" in capsys.readouterr().out


def test_run_errors(client: Client, registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--project", registered, "--name", "cli-etl", "-p", "nope=1"]) == 2
    assert "has no parameter(s) 'nope'" in capsys.readouterr().err
    assert main(["run", "--project", registered, "--name", "missing"]) == 2
    assert "flow 'missing' not found" in capsys.readouterr().err
    for args, message in [
        (["run"], "give a flow FILE to run here, or --project P --name FLOW"),
        (["run", "flow.py", "--project", registered, "--name", "x"], "not both"),
        (["run", "--project", registered], "--project needs --name FLOW"),
        (["run", "flow.py", "--watch"], "--watch only work(s) with --project"),
        (["run", "--project", registered, "--name", "x", "--executor", "e"], "--executor-kwargs are for"),
    ]:
        assert main(args) == 2, args
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(("final", "code"), [("Success", 0), ("Failed", 1)])
def test_run_watch_follows_states_and_logs(
    client: Client, registered: str, capsys: pytest.CaptureFixture[str], final: str, code: int
) -> None:
    label = unique("label")
    agent = drive_when_created(client, label, final)
    assert main(["run", "--project", registered, "--name", "cli-etl", "-l", label, "--watch"]) == code
    agent.join(10)
    out = capsys.readouterr().out
    assert "INFO     extract done" in out and "INFO     load done" in out
    assert ": Scheduled" in out or ": Submitted" in out or ": Running" in out
    reason = "" if final == "Success" else " (task 'load' failed)"
    assert out.rstrip().splitlines()[-1].endswith(f": {final}{reason}")
    assert out.index("load done") < out.index(f": {final}")


def test_logs_and_follow(client: Client, registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    label = unique("label")
    run_id = client.create_flow_run(project_name=registered, flow_name="cli-etl", labels=[label])
    assert main(["logs", run_id]) == 0
    assert capsys.readouterr().out == ""
    agent = threading.Thread(target=drive_run, args=(client, run_id, [label]), kwargs={"delay": 0.1}, daemon=True)
    agent.start()
    assert main(["logs", run_id, "--follow"]) == 0  # returns once the run is finished
    agent.join(10)
    assert client.get_flow_run(run_id).state == "Success"
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("INFO", 1)[1].strip() for line in lines] == ["extract done", "load done"]
    client.write_logs(run_id, [{"message": "late", "level": "WARNING", "task_slug": "double-1"}])
    assert main(["logs", run_id]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("WARNING  [double-1] late")
    assert main(["logs", "no-such-run"]) == 2
    assert "flow run 'no-such-run' not found" in capsys.readouterr().err


def test_get_tables(client: Client, registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    label = unique("label")
    run_id = client.create_flow_run(project_name=registered, flow_name="cli-etl", labels=[label, "x"])
    other = client.create_flow_run(project_name=registered, flow_name="cli-etl", labels=[label])
    client.cancel_flow_run(other)
    agent_name = unique("agent")
    client.register_agent(agent_name, "local", [label])

    assert main(["get", "projects"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "FLOWS", "CREATED", "ID"]
    assert any(line.startswith(registered) and line.split()[1] == "1" for line in out.splitlines())

    assert main(["get", "flows", "--project", registered]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "VERSION", "PROJECT", "LABELS", "CREATED", "ID"]
    assert row.split()[:3] == ["cli-etl", "1", registered]
    assert header.index("PROJECT") == row.index(registered)  # aligned

    assert main(["get", "flow-runs", "--label", label, "--state", "Scheduled", "--project", registered,
                 "--flow", "cli-etl"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[-1] == run_id and "Scheduled" in lines[1]
    assert main(["get", "flow-runs", "--label", label, "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[-1] == "(1 of 2; use --limit to see more)"
    assert main(["get", "flow-runs", "--label", unique("none")]) == 0
    assert capsys.readouterr().out.strip() == "no flow runs"

    assert main(["get", "agents"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "KIND", "LABELS", "LAST", "SEEN", "ID"]
    assert any(line.split()[:3] == [agent_name, "local", label] for line in out.splitlines())


def test_a_long_history_is_counted_up_to_a_point_and_says_so(
    client: Client, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GET /runs counts 100 runs past the page, no more (total_exact false past that): the CLI says "101+"
    label = unique("label")
    client.create_flow_runs([{"project_name": registered, "flow_name": "cli-etl", "labels": [label]}] * 102)
    assert main(["runs", "ls", "--label", label, "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(1 of 101+; use --limit to see more)"
    assert main(["get", "flow-runs", "--label", label, "--limit", "2"]) == 0  # 102 = 2 + 100: counted in full
    assert capsys.readouterr().out.splitlines()[-1] == "(2 of 102; use --limit to see more)"


def test_explain(client: Client, registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    label = unique("label")
    run_id = client.create_flow_run(project_name=registered, flow_name="cli-etl", labels=[label])
    fits, lacks = unique("fits"), unique("lacks")
    client.register_agent(fits, "local", [label, "gpu"])
    client.register_agent(lacks, "docker", ["gpu"])
    assert main(["explain", run_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Flow run {run_id}: Scheduled, labels [{label}]\n")
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith((fits, lacks))}
    assert "yes" in rows[fits].split() and "can take it" in rows[fits]
    assert "no" in rows[lacks].split() and f"the agent lacks label(s) {label}" in rows[lacks]


def test_unreachable_server_exits_1(settings_env, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings_env(API__URL=url)
    assert main(["get", "projects"]) == 1
    err = capsys.readouterr().err
    assert f"can't reach the headwater API at {url}/api/v1" in err and "headwater server start" in err
