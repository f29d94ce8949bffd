"""Issue 4's acceptance: agents and flow-run processes killed with SIGKILL; the server recovers the run."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .conftest import Live, finished, register_script, wait_for, write_flow

FAST = {
    "HEADWATER__SERVER__HEARTBEAT_TIMEOUT": "6",
    "HEADWATER__SERVER__RECOVERY_INTERVAL": "0.3",
    "HEADWATER__SERVER__MAX_RESCHEDULES": "1",
}
AGENT_ENV = {"HEADWATER__RUNNER__HEARTBEAT_INTERVAL": "0.5"}

SLOW_FIRST_TIME = '''
import os, time
from headwater import Flow, task
from headwater.environments import LocalEnvironment

FOLDER = {folder!r}

@task
def work():
    marker = os.path.join(FOLDER, "started-once")
    with open(os.path.join(FOLDER, "spans.txt"), "a") as f:
        f.write(f"start {{os.getpid()}} {{time.time()}}\\n")
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(60)  # killed long before this ends
    with open(os.path.join(FOLDER, "spans.txt"), "a") as f:
        f.write(f"end {{os.getpid()}} {{time.time()}}\\n")
    return "done"

with Flow("survivor", environment=LocalEnvironment(labels=["r"])) as flow:
    work()
'''


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_agent_and_run_are_recovered_by_a_second_agent(live_factory: Callable[..., Live],
                                                                 tmp_path: Path) -> None:
    _, client, agents = live_factory(env=FAST)
    flow_id = register_script(client, write_flow(tmp_path, "survivor", SLOW_FIRST_TIME.format(folder=str(tmp_path))))
    first = agents.start("-l", "r", "--name", "first", env=AGENT_ENV)
    run_id = client.create_flow_run(flow_id)
    spans = tmp_path / "spans.txt"
    wait_for(lambda: spans.exists() and "start" in spans.read_text(), what="the first attempt to start")
    first_pid = int(spans.read_text().split()[1])
    os.kill(first.pid, signal.SIGKILL)  # the agent and its flow-run process, at once
    os.kill(first_pid, signal.SIGKILL)
    first.wait()
    wait_for(lambda: not pid_alive(first_pid), what="the flow-run process to die")
    killed_at = time.time()
    agents.start("-l", "r", "--name", "second", env=AGENT_ENV)
    run = finished(client, run_id, timeout=60)
    assert run.state == "Success", run.state_message
    assert run.reschedule_count == 1
    assert run.agent_id == {a.name: a.id for a in client.list_agents()}["second"]
    starts = [line.split() for line in spans.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 2 and float(starts[1][2]) > killed_at  # never two at once
    messages = [r.message for r in client.get_flow_run_logs(run_id)]
    assert any("no heartbeat" in m and "rescheduled (1 of 1)" in m for m in messages)


ALWAYS_DIES = '''
import os, signal
from headwater import Flow, task
from headwater.environments import LocalEnvironment

def parent_of(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])

@task
def die():
    agent = os.getppid()  # started cold, this process's parent is the agent
    with open(f"/proc/{agent}/cmdline", "rb") as cmdline:
        if b"headwater.agent.zygote" in cmdline.read():  # started warm: the agent's warm starter forked it
            agent = parent_of(agent)
    os.kill(agent, signal.SIGKILL)  # the machine "dies": the agent ...
    os.kill(os.getpid(), signal.SIGKILL)  # ... and the flow-run process

with Flow("doomed", environment=LocalEnvironment(labels=["d"])) as flow:
    die()
'''


def test_a_run_that_always_dies_ends_failed_after_the_allowed_attempts(live_factory: Callable[..., Live],
                                                                      tmp_path: Path) -> None:
    _, client, agents = live_factory(env=FAST)
    flow_id = register_script(client, write_flow(tmp_path, "doomed", ALWAYS_DIES))
    run_id = client.create_flow_run(flow_id)
    for attempt in range(2):  # max_reschedules = 1: two attempts in all
        agent = agents.start("-l", "d", "--name", f"agent-{attempt}", env=AGENT_ENV)
        agent.wait(timeout=60)
        assert agent.returncode == -signal.SIGKILL
        if attempt == 0:
            wait_for(lambda: client.get_flow_run(run_id).state == "Scheduled", what="the reschedule")
    run = finished(client, run_id, timeout=30)
    assert run.state == "Failed"
    assert "rescheduled 1 time(s) already" in (run.state_message or "")  # the reason, named
    messages = [r.message for r in client.get_flow_run_logs(run_id)]
    assert sum("no heartbeat" in m for m in messages) == 2
