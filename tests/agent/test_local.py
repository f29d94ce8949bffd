"""LocalAgent: the agent contract with processes on this machine, and what is local about it."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from headwater.agent.local import LocalAgent, describe_exit
from headwater.client import Client
from headwater.server.process import ServerProcess

from .contract import LoopContract
from .helpers import FAST, STANDIN, running, unique, wait_for


def local_agent(server: ServerProcess, **kwargs: Any) -> LocalAgent:
    """A LocalAgent for ``server`` that runs the stand-in instead of ``headwater execute flow-run``."""
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("name", unique("local"))
    kwargs.setdefault("hostname_label", False)
    agent = LocalAgent(api_url=server.url, **kwargs)
    agent._command = list(STANDIN)
    return agent


class TestLocalAgent(LoopContract):
    many_runs = 20  # 200 real runs through two LocalAgent processes: tests/acceptance/test_life_of_a_run.py

    def make_agent(self, server: ServerProcess, **kwargs: Any) -> LocalAgent:
        return local_agent(server, **kwargs)


def test_hostname_label_is_on_by_default_and_off_on_request(server: ServerProcess) -> None:
    assert LocalAgent(labels=["dev"], api_url=server.url).labels == {"dev", socket.gethostname()}
    assert LocalAgent(labels=["dev"], api_url=server.url, hostname_label=False).labels == {"dev"}
    assert LocalAgent(api_url=server.url).name == f"local-{socket.gethostname()}"


def test_a_run_labelled_with_the_hostname_runs_on_this_host(
    server: ServerProcess, client: Client, flow_id: str
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label, socket.gethostname()])
    with running(local_agent(server, labels=[label], hostname_label=True)):
        assert client.wait_for_flow_run(run_id, timeout=30).state == "Success"


def test_an_unlaunchable_command_fails_the_run(
    server: ServerProcess, client: Client, flow_id: str, tmp_path: Path
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = local_agent(server, labels=[label])
    agent._command = [str(tmp_path / "no-such-program")]
    with running(agent):
        run = client.wait_for_flow_run(run_id, timeout=30)
    assert run.state == "Failed"
    assert "FileNotFoundError" in (run.state_message or "") and "no-such-program" in (run.state_message or "")


def test_import_paths_go_first_on_the_pythonpath(
    server: ServerProcess, client: Client, flow_id: str, tmp_path: Path
) -> None:
    label = unique("label")
    dump = tmp_path / "env.json"
    run_id = client.create_flow_run(flow_id, labels=[label])
    env_vars = {"PYTHONPATH": "/from/env_vars", "STANDIN_DUMP_ENV": str(dump)}
    agent = local_agent(server, labels=[label], env_vars=env_vars, import_paths=["/first", Path("/second")])
    with running(agent):
        assert client.wait_for_flow_run(run_id, timeout=30).state == "Success"
    env = json.loads(dump.read_text())
    assert env["PYTHONPATH"] == os.pathsep.join(["/first", "/second", "/from/env_vars"])
    assert env["HEADWATER__CONTEXT__FLOW_RUN_ID"] == run_id


def test_stop_waits_for_running_processes(server: ServerProcess, client: Client, flow_id: str) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    with running(local_agent(server, labels=[label], env_vars={"STANDIN_SLEEP": "1.5"})):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", timeout=20, what="the run starting")
    assert client.get_flow_run(run_id).state == "Success"  # start() returned only after the process ended


def test_stop_terminates_processes_past_the_stop_timeout(server: ServerProcess, client: Client, flow_id: str) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    settings = FAST.model_copy(update={"stop_timeout": 0.5})
    began = time.monotonic()
    with running(local_agent(server, labels=[label], env_vars={"STANDIN_SLEEP": "60"}, settings=settings)) as agent:
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", timeout=20, what="the run starting")
    assert time.monotonic() - began < 20
    run = client.get_flow_run(run_id)
    assert run.state == "Failed"
    assert f"was stopped by agent {agent.name!r}" in (run.state_message or ""), run.state_message
    assert "SIGTERM" in (run.state_message or "")


def test_a_burst_of_runs_starts_at_most_max_workers_processes_at_once(
    server: ServerProcess, client: Client, flow_id: str
) -> None:
    label = unique("label")
    run_ids = [client.create_flow_run(flow_id, labels=[label]) for _ in range(6)]
    settings = FAST.model_copy(update={"max_workers": 2})
    most = 0
    with running(local_agent(server, labels=[label], settings=settings, env_vars={"STANDIN_SLEEP": "1"})) as agent:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            most = max(most, len(agent.deployed_flow_run_ids()))
            if all(client.get_flow_run(run_id).state == "Success" for run_id in run_ids):
                break
            time.sleep(0.05)
    assert [client.get_flow_run(run_id).state for run_id in run_ids] == ["Success"] * 6
    assert most == 2  # the runs' processes share this machine: two at a time, then the next


def test_describe_exit() -> None:
    assert describe_exit(3) == "code 3"
    assert describe_exit(-9) == "code -9 (killed by SIGKILL)"


def test_the_real_flow_run_entrypoint(server: ServerProcess, client: Client, tmp_path: Path) -> None:
    """The agent's own command, ``python -m headwater execute flow-run``, runs a registered flow."""
    pytest.importorskip("headwater.environments.execution")
    if importlib.util.find_spec("headwater.__main__") is None:
        pytest.skip("`python -m headwater` (headwater/__main__.py) does not exist yet")
    from .flows import TESTS_DIR, make_flow

    label = unique("label")
    project = unique("project")
    client.create_project(project)
    flow_id = client.register(make_flow(tmp_path / "flows"), project)
    run_id = client.create_flow_run(flow_id, labels=[label], parameters={"x": 20})
    agent = LocalAgent(
        name=unique("local"), labels=[label], api_url=server.url, settings=FAST,
        hostname_label=False, import_paths=[TESTS_DIR],
    )  # fmt: skip
    with running(agent):
        run = client.wait_for_flow_run(run_id, timeout=60)
    logs = "\n".join(r.message for r in client.get_flow_run_logs(run_id))
    assert run.state == "Success", f"{run.state}: {run.state_message}\n{logs}"
    assert {t.state for t in client.get_task_runs(run_id)} == {"Success"}
