"""``cancel``, ``retry``, ``runs ls|watch``, ``logs --level/--task``, state filters and ``run --watch`` on a stuck
run, through ``main([...])`` (or a real CLI process) against a live server process.

A fake agent (``client.live.drive_run``) moves runs along through the client.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from client.live import LiveServer, drive_in_thread, drive_run, unique
from headwater.cli import main
from headwater.cli.task_view import progress_bar, watch_tasks
from headwater.client import Client

FLOW_FILE = """
from headwater import Flow, Parameter, task

@task
def double(x):
    return 2 * x

@task
def show(y):
    print(y)

with Flow("cli-ops") as flow:
    show(double(Parameter("x", default=1)))
"""


@pytest.fixture
def project(client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A project holding flow 'cli-ops' (tasks double-1, show-1, x), registered through the CLI."""
    name = unique("project")
    path = tmp_path / "flow.py"
    path.write_text(FLOW_FILE)
    assert main(["create", "project", name]) == 0
    assert main(["register", "--project", name, str(path)]) == 0
    capsys.readouterr()
    return name


def new_run(client: Client, project: str, **kwargs: object) -> tuple[str, str]:
    """A Scheduled run of 'cli-ops' with a label of its own; (id, label)."""
    label = unique("label")
    run_id = client.create_flow_run(project_name=project, flow_name="cli-ops", labels=[label], **kwargs)  # type: ignore[arg-type]
    return run_id, label


def test_api_refuses_unknown_states_and_takes_any_case(client: Client, project: str, server: LiveServer) -> None:
    run_id, label = new_run(client, project)
    bad = httpx.get(f"{server.api}/runs", params={"state": ["Scheduled", "Bogus"]})
    assert bad.status_code == 422
    assert "unknown flow-run state 'Bogus'" in bad.text
    assert "Scheduled, Submitted, Running, Cancelling, Success, Failed, Cancelled" in bad.text
    for spelling in ("scheduled", "SCHEDULED", " Scheduled"):
        ok = httpx.get(f"{server.api}/runs", params={"state": spelling, "label": label})
        assert ok.status_code == 200 and [r["id"] for r in ok.json()["flow_runs"]] == [run_id], spelling
    none = httpx.get(f"{server.api}/runs", params={"state": "success", "label": label})
    assert none.json()["flow_runs"] == []


def test_get_flow_runs_state_in_any_case(client: Client, project: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, label = new_run(client, project)
    assert main(["get", "flow-runs", "--state", "scheduled", "--label", label]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[-1] == run_id


def test_cancel(client: Client, project: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, _ = new_run(client, project)
    assert main(["cancel", run_id]) == 0
    assert capsys.readouterr().out.strip().endswith(f"({run_id}): Cancelled")
    assert client.get_flow_run(run_id).state == "Cancelled"
    assert main(["runs", "cancel", run_id]) == 2  # already finished: the server refuses
    assert "headwater: error:" in capsys.readouterr().err
    assert main(["cancel", "no-such-run"]) == 2
    assert "flow run 'no-such-run' not found" in capsys.readouterr().err


def test_retry(client: Client, project: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, label = new_run(client, project, parameters={"x": 7})
    assert main(["retry", run_id]) == 2
    err = capsys.readouterr().err
    assert f"flow run {run_id} is Scheduled, not finished: only a finished run" in err
    assert f"headwater cancel {run_id}" in err
    drive_run(client, run_id, [label], final="Failed")
    assert main(["retry", run_id]) == 0
    out = capsys.readouterr().out
    old = client.get_flow_run(run_id)
    new_runs = [r for r in client.list_flow_runs(label=label) if r.id != run_id]
    [new] = new_runs
    assert f"created: id {new.id}, a retry of {run_id} (Failed)" in out
    assert (new.flow_id, new.parameters, new.labels, new.state) == (old.flow_id, {"x": 7}, [label], "Scheduled")
    assert main(["runs", "retry", run_id, "-q", "--run-name", "again"]) == 0
    newest = capsys.readouterr().out.strip()
    assert client.get_flow_run(newest).run_name == "again"


def test_runs_ls(client: Client, project: str, capsys: pytest.CaptureFixture[str]) -> None:
    done_id, label = new_run(client, project)
    waiting = client.create_flow_run(project_name=project, flow_name="cli-ops", labels=[label])
    drive_run(client, done_id, [label])
    agent_name = {a.id: a.name for a in client.list_agents()}[client.get_flow_run(done_id).agent_id]
    assert main(["runs", "ls", "--label", label, "--project", project, "--flow", "cli-ops"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "FLOW", "STATE", "DURATION", "AGENT", "STARTED"]
    assert [row.split()[0] for row in rows] == [waiting, done_id]  # newest first
    assert rows[0].split()[1:] == ["cli-ops", "Scheduled", "-", "-", "-"]
    done = rows[1].split()
    assert done[1:3] == ["cli-ops", "Success"] and done[3].endswith("s") and done[4] == agent_name
    assert main(["runs", "ls", "--label", label, "--state", "success"]) == 0
    assert [row.split()[0] for row in capsys.readouterr().out.splitlines()[1:]] == [done_id]
    assert main(["runs", "ls", "--label", unique("none")]) == 0
    assert capsys.readouterr().out.strip() == "no flow runs"


@pytest.mark.timeout(60)
def test_runs_watch_plain(client: Client, project: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, label = new_run(client, project)

    def agent() -> None:
        agent_id = client.register_agent(unique("agent"), "fake", [label])
        [run] = client.claim_flow_runs(agent_id, [label], wait=10)
        client.set_flow_run_state(run_id, "Running", version=run.version)
        client.set_task_run_states(run_id, [{"task_slug": "double-1", "state": "Running"}])
        client.set_task_run_states(run_id, [{"task_slug": "double-1", "state": "Success"}])
        client.set_task_run_states(run_id, [{"task_slug": "show-1", "state": "Failed", "message": "boom"}])
        client.set_flow_run_state(run_id, "Failed", message="show-1: boom")

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    assert main(["runs", "watch", run_id]) == 1  # the run failed
    thread.join(10)
    out = capsys.readouterr().out
    assert "task double-1: Success" in out and "task show-1: Failed (boom)" in out
    assert "\x1b[" not in out  # no terminal control codes into a pipe
    table = out[out.rindex("flow run ") :]
    assert table.splitlines()[0].endswith(": Failed (show-1: boom)")
    assert progress_bar(2, 3) in table  # x, double-1 and show-1; two finished
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[3:]}
    assert rows == {"x": "Pending", "double-1": "Success", "show-1": "Failed"}


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, to see what ``runs watch`` draws on one."""

    def isatty(self) -> bool:
        return True


@pytest.mark.timeout(60)
def test_runs_watch_redraws_on_a_terminal(client: Client, project: str) -> None:
    run_id, label = new_run(client, project)
    thread = drive_in_thread(client, run_id, [label], delay=0.3)
    out = Terminal()
    run = watch_tasks(client, run_id, out=out, poll=0.05)
    thread.join()
    text = out.getvalue()
    assert run.state == "Success"
    assert "\x1b[" in text and "F\x1b[J" in text  # moved up over the last drawing and cleared it
    last = text[text.rindex("\x1b[J") + 3 :].splitlines()  # the last drawing
    assert last[0].endswith(": Success") and last[1].startswith("[") and last[1].endswith("/3 tasks")


def test_logs_level_and_task_filters(client: Client, project: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, label = new_run(client, project)
    client.write_logs(
        run_id,
        [
            {"message": "debugging", "level": "DEBUG", "task_slug": "double-1"},
            {"message": "doubling", "level": "INFO", "task_slug": "double-1"},
            {"message": "odd input", "level": "WARNING", "task_slug": "double-1"},
            {"message": "show broke", "level": "ERROR", "task_slug": "show-1"},
            {"message": "run note", "level": "INFO"},
        ],
    )
    assert main(["logs", run_id, "--level", "warning"]) == 0
    assert [line.split(None, 3)[3] for line in capsys.readouterr().out.splitlines()] == [
        "[double-1] odd input",
        "[show-1] show broke",
    ]
    assert main(["logs", run_id, "--task", "double-1", "--level", "INFO"]) == 0
    assert capsys.readouterr().out.count("\n") == 2
    thread = drive_in_thread(client, run_id, [label], delay=0.05)
    assert main(["logs", run_id, "-f", "--task", "show-1"]) == 0  # returns once the run is finished
    thread.join()
    assert capsys.readouterr().out.splitlines()[-1].endswith("ERROR    [show-1] show broke")


def test_run_watch_explains_a_run_no_agent_takes(client: Client, project: str, server: LiveServer) -> None:
    """A real CLI process: ``run --watch`` says why the run stays Scheduled, and watches on."""
    label = unique("needs")
    other = unique("other-agent")
    client.register_agent(other, "local", ["gpu"])
    process = subprocess.Popen(
        [sys.executable, "-m", "headwater.cli", "run", "--project", project, "--name", "cli-ops",
         "-l", label, "--watch", "--stuck-after", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HEADWATER__API__URL": server.url},
    )  # fmt: skip
    killer = threading.Timer(60, process.kill)
    killer.start()
    try:
        assert process.stdout is not None
        lines = []
        started = time.monotonic()
        for line in process.stdout:
            lines.append(line)
            if line.startswith("(still watching"):
                break
        waited = time.monotonic() - started
        text = "".join(lines)
        assert ": still Scheduled after 1s; no agent has taken it yet." in text, text
        assert waited >= 1.0
        assert f"the agent lacks label(s) {label}" in text and other in text  # the explain table
        assert f"headwater agent local start -l {label}" in text
        [run] = client.list_flow_runs(label=label)
        client.cancel_flow_run(run.id)  # it keeps watching until the run finishes
        rest, err = process.communicate(timeout=30)
    finally:
        killer.cancel()
    assert process.returncode == 1, err
    assert rest.rstrip().splitlines()[-1].endswith(": Cancelled (cancelled on request)")
    assert "still Scheduled" not in rest  # said once
