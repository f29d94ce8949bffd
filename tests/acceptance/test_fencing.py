"""Issue 13 §1: a stale agent, or a stale flow-run process, must not touch a run that was taken from it.

Agent A and its flow-run process are frozen (SIGSTOP) for longer than the server's
heartbeat timeout; recovery reschedules the run and agent B runs it. Both agents have
the same name, so they are one agent on the server: only the claim's attempt number
tells the stale process from the new one. Then either the old process is killed and A
resumed (A must not report B's run Failed), or both are resumed (the old process must
stop before its task's side effect, and must not report the run).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Live, finished, register_script, wait_for, write_flow
from .test_recovery_with_agents import pid_alive

FAST = {
    "HEADWATER__SERVER__HEARTBEAT_TIMEOUT": "10",
    "HEADWATER__SERVER__RECOVERY_INTERVAL": "0.3",
    "HEADWATER__SERVER__MAX_RESCHEDULES": "3",
}
AGENT_ENV = {"HEADWATER__RUNNER__HEARTBEAT_INTERVAL": "0.5", "HEADWATER__RUNNER__CANCEL_CHECK_INTERVAL": "0.5"}

# The first attempt's task sleeps 8 s in one call: frozen longer than that, it would write its
# "end" the moment it resumes unless the process stops first. Later attempts take 5 s.
TASK = '''
import os, time
from headwater import Flow, task
from headwater.environments import LocalEnvironment

FOLDER = {folder!r}

def note(word):
    with open(os.path.join(FOLDER, "spans.txt"), "a") as f:
        f.write(f"{{word}} {{os.getpid()}} {{time.time()}}\\n")

@task
def work():
    marker = os.path.join(FOLDER, "first-attempt")
    first = not os.path.exists(marker)
    open(marker, "a").close()
    note("start")
    time.sleep(8 if first else 5)
    note("end")
    return "done"

with Flow("fenced", environment=LocalEnvironment(labels=["f"])) as flow:
    work()
'''


def spans(path: Path) -> list[tuple[str, int, float]]:
    if not path.exists():
        return []
    return [(w, int(p), float(t)) for w, p, t in (line.split() for line in path.read_text().splitlines() if line)]


def freeze_and_take_over(live: Live, tmp_path: Path) -> tuple[str, object, int, int]:
    """Start A, freeze it and its flow-run process until B runs the rescheduled run; (run, A, old pid, new pid)."""
    _, client, agents = live
    flow_id = register_script(client, write_flow(tmp_path, "fenced", TASK.format(folder=str(tmp_path))))
    agent_a = agents.start("-l", "f", "--name", "twin", env=AGENT_ENV)
    run_id = client.create_flow_run(flow_id)
    path = tmp_path / "spans.txt"
    old_pid = wait_for(lambda: [p for w, p, _ in spans(path) if w == "start"], what="the first attempt")[0]
    os.kill(agent_a.pid, signal.SIGSTOP)
    os.kill(old_pid, signal.SIGSTOP)
    wait_for(lambda: client.get_flow_run(run_id).reschedule_count == 1, timeout=60, what="recovery")
    agents.start("-l", "f", "--name", "twin", env=AGENT_ENV)  # B: the same agent on the server
    starts = wait_for(lambda: [p for w, p, _ in spans(path) if w == "start" and p != old_pid], timeout=60,
                      what="the second attempt")  # fmt: skip
    run = client.get_flow_run(run_id)
    assert run.state == "Running" and run.attempt == 2, (run.state, run.attempt)
    return run_id, agent_a, old_pid, starts[0]


@pytest.mark.timeout(240)
def test_a_resumed_agent_does_not_fail_the_run_it_lost(live_factory: Callable[..., Live], tmp_path: Path) -> None:
    live = live_factory(env=FAST)
    _, client, agents = live
    run_id, agent_a, old_pid, _ = freeze_and_take_over(live, tmp_path)
    os.kill(old_pid, signal.SIGKILL)
    assert isinstance(agent_a, __import__("subprocess").Popen)
    os.kill(agent_a.pid, signal.SIGCONT)  # A reaps its old process (exit -9) within half a second
    time.sleep(3)
    run = client.get_flow_run(run_id)
    assert run.state == "Running", f"{run.state}: {run.state_message}"
    run = finished(client, run_id, timeout=60)
    assert run.state == "Success", run.state_message
    messages = [r.message for r in client.get_flow_run_logs(run_id)]
    assert not any("code -9" in m for m in messages), messages
    assert "not this agent's any more" in agents.logs() or "taken" in agents.logs()


@pytest.mark.timeout(240)
def test_a_resumed_flow_run_process_stops_before_its_task_goes_on(live_factory: Callable[..., Live],
                                                                  tmp_path: Path) -> None:
    live = live_factory(env=FAST)
    _, client, _ = live
    run_id, agent_a, old_pid, new_pid = freeze_and_take_over(live, tmp_path)
    assert isinstance(agent_a, __import__("subprocess").Popen)
    os.kill(old_pid, signal.SIGCONT)
    os.kill(agent_a.pid, signal.SIGCONT)
    wait_for(lambda: not pid_alive(old_pid), timeout=20, what="the stale flow-run process to stop")
    assert client.get_flow_run(run_id).state == "Running"  # the stale process reported nothing
    run = finished(client, run_id, timeout=60)
    assert run.state == "Success" and run.attempt == 2, run.state_message
    done = spans(tmp_path / "spans.txt")
    assert [(w, p) for w, p, _ in done] == [("start", old_pid), ("start", new_pid), ("end", new_pid)], done
    messages = [r.message for r in client.get_flow_run_logs(run_id)]
    assert sum("rescheduled (1 of 3)" in m for m in messages) == 1
