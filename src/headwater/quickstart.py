"""``headwater quickstart`` (and ``make demo``): the whole life of a flow run on this machine.

Starts the API server on SQLite and a LocalAgent, registers the example flow with
Local storage and a LocalEnvironment, runs it with a progress display until it
finishes, prints its task states, the run's address in the web UI and how to do
each step by hand, then stops everything it started (nothing is left running; the
temporary home is removed). With ``keep``, the server and agent stay up until Ctrl-C
(so the run can be looked at in the browser), and the home is kept.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from headwater.core.run_states import FINISHED, FlowRunState


def _agent(home: Path, api_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HEADWATER__HOME": str(home), "HEADWATER__API__URL": api_url}
    log = (home / "agent.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "headwater", "agent", "local", "start", "-l", "demo", "--name", "quickstart-agent"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _follow(client: Any, run_id: str, total: int, timeout: float) -> Any:
    """Print each task-run state change as it reaches the server; return the finished run."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_flow_run(run_id)
        for task_run in sorted(client.get_task_runs(run_id), key=lambda t: t.start_time or t.updated):
            if seen.get(task_run.task_slug) == task_run.state or task_run.state == "Running":
                continue
            seen[task_run.task_slug] = task_run.state
            done = sum(1 for state in seen.values() if state not in ("Running", "Retrying"))
            bar = "#" * (20 * done // max(total, 1))
            detail = f" — {task_run.state_message}" if task_run.state_message and task_run.state != "Success" else ""
            print(f"  [{bar:<20}] {done:>2}/{total} {task_run.task_slug}: {task_run.state}{detail}", flush=True)
        if run.state in FINISHED:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"flow run {run_id} did not finish within {timeout:.0f}s (it is {run.state})")
        time.sleep(0.2)


def run_quickstart(keep: bool = False, timeout: float = 180.0) -> int:
    """Run the quickstart; 0 when the example run succeeded."""
    from headwater.client import Client
    from headwater.client.registration import register_flow
    from headwater.examples.etl import build
    from headwater.server.process import ServerProcess
    from headwater.storage import Local

    home = Path(tempfile.mkdtemp(prefix="headwater-quickstart-"))
    server = ServerProcess(home, f"sqlite:///{home / 'headwater.db'}")
    agent = None
    try:
        print(f"1. starting the API server (SQLite in {home}) ...", flush=True)
        server.start()
        print(f"   {server.api}")
        print("2. starting a LocalAgent with label 'demo' ...", flush=True)
        agent = _agent(home, server.url)
        with Client(server.url) as client:
            client.create_project("quickstart")
            print("3. registering the example flow 'etl' (Local storage, LocalEnvironment) ...", flush=True)
            flow = build()
            flow.storage = Local(directory=str(home / "flows"), add_default_labels=False)
            flow_id = register_flow(flow, "quickstart", client=client)
            print("4. creating a flow run; the agent picks it up and runs it:", flush=True)
            run_id = client.create_flow_run(flow_id, parameters={"rows": 12}, run_name="quickstart")
            run = _follow(client, run_id, total=len(flow), timeout=timeout)
            print(f"\nflow run {run.run_name} ({run_id}): {run.state} — {run.state_message or ''}")
            print("\ntask        state     attempts")
            for task_run in sorted(client.get_task_runs(run_id), key=lambda t: t.start_time or t.updated):
                print(f"{task_run.task_slug:<12}{task_run.state:<10}{task_run.attempts}")
            for record in client.get_flow_run_logs(run_id):
                if "on_start" in record.message or "on_exit" in record.message:
                    print(f"  log: {record.message}")
        print(f"\nSee the run in the browser: {server.url}/#/runs/{run_id}")
        print(_by_hand(server.url, keep))
        if keep:
            _wait_for_interrupt(server.url)
        return 0 if run.state == FlowRunState.SUCCESS else 1
    finally:
        _stop(agent)
        server.stop()
        if keep:
            print(f"(kept {home})")
        else:
            shutil.rmtree(home, ignore_errors=True)


def _wait_for_interrupt(url: str) -> None:
    """Keep the server and agent up until Ctrl-C (or SIGTERM)."""
    print(f"The server stays up at {url} (the web UI at {url}/); press Ctrl-C to stop it.", flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a parent may have left it ignored
        signal.signal(signum, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping the server and the agent ...", flush=True)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _by_hand(url: str, keep: bool = False) -> str:
    now = "it stays up until Ctrl-C" if keep else "it stops now; `make demo KEEP=1` keeps it up"
    return f"""
The server was at {url}/api/v1 ({now}). To do each step by hand:
  headwater server start                                  # API on http://127.0.0.1:4200, SQLite in ~/.headwater
  headwater agent local start -l demo                     # in another terminal
  headwater create project quickstart
  headwater register --project quickstart examples/etl.py
  headwater run --project quickstart --name etl --param rows=12 --watch
  headwater get flow-runs ; headwater logs RUN_ID ; headwater explain RUN_ID
"""
