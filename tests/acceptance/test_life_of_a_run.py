"""Issue 4's acceptance: the documented life of a flow run, with a live server and real agent processes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from headwater.client import Client
from headwater.server.process import ServerProcess

from .conftest import Agents, finished, register_script, wait_for, write_flow

HOST = socket.gethostname()

LABELLED = '''
from headwater import Flow, task
from headwater.environments import LocalEnvironment

@task
def hello():
    return "hi"

with Flow("{name}", environment=LocalEnvironment(labels={labels!r})) as flow:
    hello()
'''


def agent_ids(client: Client) -> set[str]:
    return {a.id for a in client.list_agents()}


def test_the_label_rule_end_to_end(live: tuple[ServerProcess, Client, Agents], tmp_path: Path) -> None:
    _, client, agents = live
    dev = register_script(client, write_flow(tmp_path, "dev", LABELLED.format(name="dev", labels=["dev"])))
    both = register_script(
        client, write_flow(tmp_path, "both", LABELLED.format(name="both", labels=["dev", "staging"]))
    )
    bare = register_script(
        client, write_flow(tmp_path, "bare", LABELLED.format(name="bare", labels=[])), add_default_labels=False
    )
    flows = {f.name: f for f in client.list_flows(project_name="acceptance")}
    assert HOST in flows["dev"].labels and HOST in flows["both"].labels  # hostname labels, on by default
    assert flows["bare"].labels == []

    agents.start("-l", "dev", "--name", "dev-only")
    wait_for(lambda: len(client.list_agents()) == 1, what="the dev agent")
    run_dev, run_both, run_bare = (client.create_flow_run(f) for f in (dev, both, bare))
    assert finished(client, run_dev).state == "Success"
    time.sleep(1.5)  # the dev-only agent has had every chance to take the others
    assert client.get_flow_run(run_both).state == "Scheduled"
    assert client.get_flow_run(run_bare).state == "Scheduled"
    verdict = client.explain_flow_run(run_both)
    dev_agent = next(a for a in verdict["agents"] if a["name"] == "dev-only")
    assert dev_agent["can_run"] is False and dev_agent["missing_labels"] == ["staging"]

    agents.start("-l", "dev", "-l", "staging", "--name", "dev-staging")
    assert finished(client, run_both).state == "Success"
    assert client.get_flow_run(run_bare).state == "Scheduled"

    agents.start("--no-hostname-label", "--name", "no-labels")
    bare_run = finished(client, run_bare)
    assert bare_run.state == "Success"
    by_name = {a.name: a.id for a in client.list_agents()}
    assert bare_run.agent_id == by_name["no-labels"]
    assert client.get_flow_run(run_both).agent_id == by_name["dev-staging"]


CALLBACKS = '''
import os
from headwater import Flow, task
from headwater.environments import LocalEnvironment

RECORD = {record!r}

def note(what):
    with open(RECORD, "a") as f:
        f.write(f"{{what}} {{os.getpid()}}\\n")

@task
def extract():
    note("extract")
    return [1, 2, 3]

@task
def transform(data):
    note("transform")
    return [x * 10 for x in data]

@task
def load(data):
    note("load")

env = LocalEnvironment(labels=["cb"], on_start=lambda: note("on_start"), on_exit=lambda: note("on_exit"))
with Flow("callbacks", environment=env) as flow:
    load(transform(extract()))
'''


def test_environment_callbacks_run_in_the_flow_run_process(live: tuple[ServerProcess, Client, Agents],
                                                           tmp_path: Path) -> None:
    _, client, agents = live
    record = tmp_path / "record.txt"
    flow_id = register_script(client, write_flow(tmp_path, "callbacks", CALLBACKS.format(record=str(record))))
    agent = agents.start("-l", "cb")
    run = finished(client, client.create_flow_run(flow_id))
    assert run.state == "Success", run.state_message
    lines = [line.split() for line in record.read_text().splitlines()]
    assert [what for what, _ in lines] == ["on_start", "extract", "transform", "load", "on_exit"]
    pids = {pid for _, pid in lines}
    assert len(pids) == 1 and str(agent.pid) not in pids  # one process: the flow-run process, not the agent


REMOTE = '''
from headwater import Flow, task
from headwater.environments import RemoteEnvironment

@task
def where():
    import logging
    from distributed import get_worker
    address = get_worker().address  # raises outside a Dask worker
    logging.getLogger("headwater.acceptance").warning("ran on worker %s", address)
    return address

env = RemoteEnvironment("headwater.executors.DaskExecutor", {{"address": {address!r}}}, labels=["dask"])
with Flow("on-dask", environment=env) as flow:
    spots = [where() for _ in range(3)]
'''


def test_remote_environment_runs_tasks_on_the_dask_workers(
    live: tuple[ServerProcess, Client, Agents], tmp_path: Path, dask_scheduler_address: str
) -> None:
    from distributed import Client as DaskClient

    _, client, agents = live
    flow_id = register_script(client, write_flow(tmp_path, "remote", REMOTE.format(address=dask_scheduler_address)))
    agents.start("-l", "dask")
    run = finished(client, client.create_flow_run(flow_id), timeout=90)
    assert run.state == "Success", run.state_message
    with DaskClient(dask_scheduler_address) as dask:
        workers = set(dask.scheduler_info()["workers"])
    task_runs = client.get_task_runs(run.id)
    assert len(task_runs) == 3 and all(t.state == "Success" for t in task_runs)

    def worker_lines() -> set[str]:  # workers ship their logs when they see the run finish
        return {r.message.split()[-1] for r in client.get_flow_run_logs(run.id) if "ran on worker" in r.message}

    reported = wait_for(worker_lines, timeout=20, what="the workers' log lines")
    assert reported <= workers  # every task logged from one of the scheduler's workers


ONCE = '''
import os
from headwater import Flow, Parameter, task
from headwater.environments import LocalEnvironment

@task
def record(n):
    fd = os.open({path!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{{n}}\\n".encode())
    os.close(fd)

with Flow("once", environment=LocalEnvironment(labels=["pool"])) as flow:
    record(Parameter("n"))
'''


def test_two_agents_run_each_of_200_runs_exactly_once(live: tuple[ServerProcess, Client, Agents],
                                                      tmp_path: Path) -> None:
    _, client, agents = live
    out = tmp_path / "executions.txt"
    flow_id = register_script(client, write_flow(tmp_path, "once", ONCE.format(path=str(out))))
    # --show-flow-logs: a flow-run process that dies leaves its output in the agent's log.
    # Four flow-run processes per agent at once (a LocalAgent's runs hold their slot until their
    # process ends): with the default ten, twenty Python processes start together on this 2-core
    # machine and starve the server.
    pool = {"HEADWATER__AGENT__MAX_WORKERS": "4"}
    agents.start("-l", "pool", "--name", "pool-a", "--show-flow-logs", env=pool)
    agents.start("-l", "pool", "--name", "pool-b", "--show-flow-logs", env=pool)
    ids = [client.create_flow_run(flow_id, parameters={"n": i}) for i in range(200)]
    wait_for(lambda: all(client.get_flow_run(i).state in ("Success", "Failed") for i in ids[-20:]),
             timeout=600, what="the last runs")
    runs = [finished(client, i, timeout=300) for i in ids]
    failed = [r for r in runs if r.state != "Success"]
    assert not failed, (
        [r.state_message for r in failed[:3]],
        [m.message for m in client.get_flow_run_logs(failed[0].id)] if failed else None,
        "\n".join(line for line in agents.logs().splitlines() if "error" in line.lower()
                  or "traceback" in line.lower() or (failed and failed[0].id in line))[-8000:],
    )
    executions = out.read_text().split()
    assert sorted(executions, key=int) == [str(i) for i in range(200)]  # each exactly once
    assert len({r.agent_id for r in runs}) == 2  # both agents took work


CUSTOM_ENVIRONMENT = '''
from headwater import Flow, task
from headwater.environments import Environment

RECORD = {record!r}

def note(what):
    with open(RECORD, "a") as f:
        f.write(what + "\\n")

class Announcing(Environment):
    """Written as documented: setup(flow), execute(flow) returning None, run(flow)."""

    def setup(self, flow):
        note("setup")

    def execute(self, flow):
        note("execute")
        self.run(flow)

    def run(self, flow):
        note("run")
        return super().run(flow)

@task
def hello():
    note("hello")

with Flow("custom-env", environment=Announcing(labels=["custom"], on_exit=lambda: note("on_exit"))) as flow:
    hello()
'''


def test_a_custom_environment_runs_through_an_agent(live: tuple[ServerProcess, Client, Agents], tmp_path: Path) -> None:
    _, client, agents = live
    record = tmp_path / "record.txt"
    flow_id = register_script(client, write_flow(tmp_path, "custom_env", CUSTOM_ENVIRONMENT.format(record=str(record))))
    run_id = client.create_flow_run(flow_id)

    agents.start("-l", "custom", "--name", "custom-agent")
    run = finished(client, run_id)

    assert run.state == "Success", (run.state_message, agents.logs())
    assert record.read_text().split() == ["setup", "execute", "run", "hello", "on_exit"]
    assert client.get_flow(flow_id).metadata.environment["kind"].endswith(".Announcing")
