"""Cancelling a run whose task won't end: the agent stops the flow-run process after agent.cancel_grace."""

from __future__ import annotations

import os
from pathlib import Path

from headwater.client import Client
from headwater.server.process import ServerProcess

from .conftest import Agents, finished, register_script, wait_for, write_flow

STUCK = '''
import os, time
from headwater import Flow, task

@task
def stuck():
    with open({pid_file!r}, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(300)  # cancellation can't stop a running task: only its process ending can

@task
def after(x):
    return x

with Flow("stuck") as flow:
    after(stuck())
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has ended too
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_the_agent_stops_a_cancelled_run_whose_task_does_not_end(
    live: tuple[ServerProcess, Client, Agents], tmp_path: Path
) -> None:
    _, client, agents = live
    pid_file = tmp_path / "pid"
    flow_id = register_script(client, write_flow(tmp_path, "stuck", STUCK.format(pid_file=str(pid_file))))
    agents.start(env={"HEADWATER__AGENT__CANCEL_GRACE": "2"})
    run_id = client.create_flow_run(flow_id)
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the task starting")
    pid = int(pid_file.read_text())

    assert client.cancel_flow_run(run_id).state == "Cancelling"
    run = finished(client, run_id, timeout=30)

    assert run.state == "Cancelled", (run.state, run.state_message)
    assert "was stopped by agent" in (run.state_message or "")
    assert "2s after the run was cancelled" in (run.state_message or "")
    wait_for(lambda: not _alive(pid), 10, "the flow-run process to end")
