"""Issue 13, part 4: a slow or briefly unreachable API must not kill a run, and a run the API
stays away from too long says why it failed.

The server is a real process, stalled with SIGSTOP and continued with SIGCONT; the runs
go through a real LocalAgent process (or, for the give-up path, the real flow-run
process). Timeouts and ``api.retry_for`` are cut to seconds so each test takes well under 30 s.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from headwater.client import Client
from headwater.core.state import Success
from headwater.engine.reporting import ApiReporter
from headwater.server.process import ServerProcess

from .conftest import Live, finished, register_script, wait_for, write_flow

#: The flow-run processes report often, so a stall hits them mid-run.
RUNNER = {
    "HEADWATER__RUNNER__HEARTBEAT_INTERVAL": "0.5",
    "HEADWATER__RUNNER__CANCEL_CHECK_INTERVAL": "0.5",
    "HEADWATER__RUNNER__LOG_BATCH_INTERVAL": "0.2",
}

WAITS_FOR_GO = """
import os, time
from headwater import Flow, task
from headwater.environments import LocalEnvironment

FOLDER = {folder!r}

@task
def work():
    open(os.path.join(FOLDER, "started"), "w").write(str(os.getpid()))
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(FOLDER, "go")) and time.time() < deadline:
        time.sleep(0.05)
    return "done"

with Flow("patient", environment=LocalEnvironment(labels=["slow-api"])) as flow:
    work()
"""


@contextmanager
def stopped(server: ServerProcess) -> Iterator[Callable[[], None]]:
    """The server process stopped (SIGSTOP); the context gives the function that continues it (SIGCONT),
    which also runs at the end whatever happens."""
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)

    def go_on() -> None:
        os.kill(pid, signal.SIGCONT)

    try:
        yield go_on
    finally:
        go_on()


def started_run(live: Live, folder: Path, *agent_args: str, env: dict[str, str]) -> str:
    """A run of the waiting flow, started by a LocalAgent process: returns once its task runs."""
    _, client, agents = live
    flow_id = register_script(client, write_flow(folder, "patient", WAITS_FOR_GO.format(folder=str(folder))))
    agents.start("-l", "slow-api", "--show-flow-logs", *agent_args, env={**RUNNER, **env})
    run_id = client.create_flow_run(flow_id)
    wait_for(lambda: (folder / "started").exists(), timeout=30, what="the run's task to start")
    return run_id


def claim_by_hand(client: Client, run_id: str) -> None:
    """Claim the run as an agent would: it becomes Submitted."""
    labels = ["slow-api", socket.gethostname()]  # the flow's, with its Local storage's hostname label
    agent_id = client.register_agent("by-hand", "test", labels)
    assert [r.id for r in client.claim_flow_runs(agent_id, labels, wait=5)] == [run_id]


def test_a_run_outlives_a_server_stopped_longer_than_the_read_timeout(
    live_factory: Callable[..., Live], tmp_path: Path
) -> None:
    live = live_factory()
    server, client, agents = live
    api = {"HEADWATER__API__TIMEOUT": "1", "HEADWATER__API__RETRY_FOR": "30"}
    run_id = started_run(live, tmp_path, env=api)
    with stopped(server):
        time.sleep(1.5)  # heartbeats and state checks go unanswered
        (tmp_path / "go").touch()  # the task ends and its run reports while the server is still stopped
        time.sleep(3)
    run = finished(client, run_id, timeout=30)
    lines = [r.message for r in client.get_flow_run_logs(run_id)]
    assert run.state == "Success", (run.state_message, lines, agents.logs()[-3000:])
    retried = [line for line in lines if "in time (ReadTimeout); trying again for" in line]
    assert retried and retried[0].startswith("the API did not answer "), lines
    assert "Traceback" not in agents.logs()


def test_a_run_whose_api_stays_away_too_long_fails_with_the_cause(
    live_factory: Callable[..., Live], tmp_path: Path
) -> None:
    live = live_factory()
    server, client, agents = live
    agent_api = {"HEADWATER__API__TIMEOUT": "1", "HEADWATER__API__RETRY_FOR": "120"}
    # the agent waits for the server to come back; its flow-run process gives up after 2 s
    process_api = ("-e", "HEADWATER__API__TIMEOUT=0.5", "-e", "HEADWATER__API__RETRY_FOR=2")
    run_id = started_run(live, tmp_path, *process_api, env=agent_api)
    # Gone, not stalled: a stalled server applies the writes sent to it once it goes on.
    server.stop()
    again = ServerProcess(server.home, server.database_url, port=server.port)
    try:
        (tmp_path / "go").touch()
        wait_for(lambda: "can't report the final state Success" in agents.logs(), timeout=25,
                 what="the flow-run process to give up reporting")  # fmt: skip
        again.start(timeout=90)  # slow beside other test suites
        run = finished(client, run_id, timeout=30)
        lines = [r.message for r in client.get_flow_run_logs(run_id)]
    finally:
        agents.stop_all()
        again.stop()
    assert run.state == "Failed", (run.state, run.state_message)
    message = run.state_message or ""
    assert message.startswith("the flow-run process exited with code 0 but left the run Running: "), message
    assert "the flow run ended Success here, but can't report the final state Success" in message
    assert f"can't reach the headwater API at {server.api} (ConnectError" in message
    assert message in lines  # the agent wrote it into the run's log too: `headwater logs RUN` shows it


def test_a_process_that_gives_up_writes_why_into_its_run_and_its_exit_report(live: Live, tmp_path: Path) -> None:
    server, client, _ = live
    flow_id = register_script(client, write_flow(tmp_path, "patient", WAITS_FOR_GO.format(folder=str(tmp_path))))
    run_id = client.create_flow_run(flow_id)
    claim_by_hand(client, run_id)
    report = tmp_path / "exit-report.txt"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEADWATER__")},
        **RUNNER,
        "HEADWATER__HOME": str(tmp_path / "home"),
        "HEADWATER__API__URL": server.url,
        "HEADWATER__API__TIMEOUT": "0.5",
        "HEADWATER__API__RETRY_FOR": "3",
        "HEADWATER__CONTEXT__FLOW_RUN_ID": run_id,
        "HEADWATER__CONTEXT__EXIT_REPORT": str(report),
    }
    command = [sys.executable, "-m", "headwater", "execute", "flow-run"]
    with stopped(server) as go_on:
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        seen: list[str] = []
        for line in process.stderr:  # the server is back by the time the process writes why it gives up
            seen.append(line)
            if "the flow-run process gives up" in line:
                go_on()
                break
        rest = process.communicate(timeout=30)[1]
    assert process.returncode == 1, "".join(seen) + rest
    cause = f"the headwater API at {server.api} did not answer GET /api/v1/runs/{run_id} in time (ReadTimeout"
    assert report.read_text().startswith(cause), report.read_text()
    assert f"headwater: error: {cause}" in rest
    run = client.get_flow_run(run_id)
    assert run.state == "Failed" and (run.state_message or "").startswith(f"the flow-run process gave up: {cause}")
    assert run.state_message in [r.message for r in client.get_flow_run_logs(run_id)]


def test_a_final_state_whose_answer_was_lost_is_not_a_failure(
    live: Live, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    server, client, _ = live
    flow_id = register_script(client, write_flow(tmp_path, "patient", WAITS_FOR_GO.format(folder=str(tmp_path))))
    run_id = client.create_flow_run(flow_id)
    claim_by_hand(client, run_id)
    version = client.set_flow_run_state(run_id, "Running", version=client.get_flow_run(run_id).version).version
    caplog.set_level(logging.INFO, "headwater")
    with Client(server.url, timeout=0.5, retry_for=20, backoff=1.0) as slow:
        reporter = ApiReporter(slow, run_id, version, heartbeat_interval=None, log_batch_interval=60)
        with stopped(server) as go_on:
            # tries at 0 s and 1.5 s reach the stopped server and are applied once it goes on (2.5 s),
            # answering nobody; the try at 4 s finds the run Success already: a 409, resent
            threading.Timer(2.5, go_on).start()
            final = reporter.finish(Success("all done"))
    assert final.is_successful()
    run = client.get_flow_run(run_id)
    assert (run.state, run.version, run.state_message) == ("Success", version + 1, "all done")
    messages = [r.getMessage() for r in caplog.records]
    assert "the final state Success was applied by a try whose answer was lost" in messages
    assert not [m for m in messages if "already Success" in m or "can't report" in m]
    assert "can't report" not in capsys.readouterr().err
