"""Why a flow-run process gave up (its exit report) is in the run's log: ``headwater logs RUN`` shows it.

A real LocalAgent starts the real ``headwater execute flow-run``, given a setting
it can't read, against a live server process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.helpers import FAST, running, wait_for
from client.live import LiveServer, unique
from headwater import Flow, Parameter, task
from headwater.agent.local import LocalAgent
from headwater.cli import main
from headwater.client import Client


@task
def double(x: int) -> int:
    return 2 * x


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli-exit-server")).start()
    yield live
    live.stop()


def test_the_reason_a_process_gave_up_is_in_the_runs_log(
    server: LiveServer, settings_env, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings_env(API__URL=server.url)
    label = unique("gives-up")
    with Flow("gives-up") as flow:
        double(Parameter("x", default=1))
    with Client(server.url) as client:
        client.create_project(label)
        flow_id = client.register_flow_metadata(label, flow.serialize()).id
        run_id = client.create_flow_run(flow_id, labels=[label])
        agent = LocalAgent(
            api_url=server.url, labels=[label], name=unique("local"), settings=FAST, hostname_label=False,
            env_vars={"HEADWATER__API__RETRY_FOR": "soon"},  # the flow-run process can't read its settings
        )  # fmt: skip
        with running(agent):
            wait_for(lambda: client.get_flow_run(run_id).state == "Failed", timeout=60, what="the run failing")
        run = client.get_flow_run(run_id)
    assert "retry_for" in (run.state_message or "").lower(), run.state_message
    assert main(["logs", run_id]) == 0
    out = capsys.readouterr().out
    assert "ERROR" in out and "the flow-run process exited" in out, out
    assert "retry_for" in out.lower() and "soon" in out, out


GIVES_UP = """
import os, sys, time
gate = sys.argv[1]
deadline = time.monotonic() + 60
while not os.path.exists(gate) and time.monotonic() < deadline:
    time.sleep(0.05)
with open(os.environ["HEADWATER__CONTEXT__EXIT_REPORT"], "w") as report:
    report.write("lost the API for 90s: ConnectError")
sys.exit(1)
"""


def test_the_reason_is_logged_even_when_the_run_was_finished_meanwhile(
    server: LiveServer, settings_env, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The run ended (here: failed by hand) before its process gave up: the agent can't set its state, but
    writes why the process gave up into its log."""
    settings_env(API__URL=server.url)
    label = unique("finished-first")
    program, gate = tmp_path / "gives_up.py", tmp_path / "go"
    program.write_text(GIVES_UP)
    with Flow("gives-up-late") as flow:
        double(Parameter("x", default=1))
    with Client(server.url) as client:
        client.create_project(label)
        run_id = client.create_flow_run(client.register_flow_metadata(label, flow.serialize()).id, labels=[label])
        agent = LocalAgent(
            api_url=server.url, labels=[label], name=unique("local"), settings=FAST, hostname_label=False
        )
        agent._command = [sys.executable, str(program), str(gate)]
        with running(agent):
            wait_for(lambda: client.get_flow_run(run_id).state == "Submitted", timeout=30, what="the claim")
            client.set_flow_run_state(run_id, "Failed", message="failed by hand")
            gate.touch()
            wait_for(
                lambda: any("lost the API" in r.message for r in client.get_flow_run_logs(run_id)),
                timeout=30, what="the exit report in the run's log",
            )  # fmt: skip
        assert client.get_flow_run(run_id).state_message == "failed by hand"  # not the agent's to change
    assert main(["logs", run_id]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith("WARNING  the flow-run process exited with code 1: lost the API for 90s: ConnectError")
