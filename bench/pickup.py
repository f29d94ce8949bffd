"""Pick-up benchmarks (issue 4). Prints one JSON document.

    .venv/bin/python bench/pickup.py [--quick]

- ``first_task``: from ``create_flow_run`` to the flow's first task starting, under a LocalAgent
  already waiting on its claim; median and p90 over the samples, with the breakdown from the
  server's own timestamps: claim (created → submitted_at), process start + import + fetching
  the run (submitted_at → Running), flow load + environment set-up (Running → first task
  start). Target ≤ 1 s median. For scale: the environment-era agent backs off to a 10 s poll.
- ``throughput``: 100 runs of a trivial flow through one LocalAgent: runs per minute, and the
  agent process's peak memory (VmHWM).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from headwater import Flow, task
from headwater.client import Client
from headwater.environments import LocalEnvironment
from headwater.server.process import ServerProcess
from headwater.storage import Local


@task
def first() -> int:
    return 1


@task
def second(x: int) -> int:
    return x + 1


def trivial_flow(home: Path) -> Flow:
    with Flow("pickup", environment=LocalEnvironment(labels=["pickup"]),
              storage=Local(directory=str(home / "flows"), add_default_labels=False)) as flow:
        second(first())
    return flow


def wait_finished(client: Client, run_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_flow_run(run_id)
        if run.state in ("Success", "Failed", "Cancelled"):
            return run
        time.sleep(0.02)
    raise TimeoutError(f"run {run_id} did not finish")


def seconds(a: datetime.datetime, b: datetime.datetime) -> float:
    return (b - a).total_seconds()


def first_task(client: Client, flow_id: str, samples: int) -> dict[str, Any]:
    totals, claims, starts, loads = [], [], [], []
    for _ in range(samples):
        began = datetime.datetime.now(datetime.UTC)
        run_id = client.create_flow_run(flow_id)
        run = wait_finished(client, run_id)
        assert run.state == "Success", run
        task_runs = client.get_task_runs(run_id)
        first_start = min(t.start_time for t in task_runs if t.start_time is not None)
        assert run.submitted_at is not None and run.start_time is not None
        totals.append(seconds(began, first_start))
        claims.append(seconds(run.created, run.submitted_at))
        starts.append(seconds(run.submitted_at, run.start_time))
        loads.append(seconds(run.start_time, first_start))
        time.sleep(0.05)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    totals.sort()
    return {
        "samples": samples,
        "median_ms": ms(totals),
        "p90_ms": round(totals[int(len(totals) * 0.9) - 1] * 1000, 1),
        "breakdown_median_ms": {
            "claim": ms(claims),
            "process_start_import_fetch": ms(starts),
            "flow_load_and_setup": ms(loads),
        },
        "target_median_ms": 1000,
        "met": statistics.median(totals) <= 1.0,
        "context_environment_era_poll_ms": 10_000,
    }


def throughput(client: Client, flow_id: str, runs: int, agent_pid: int) -> dict[str, Any]:
    start = time.perf_counter()
    ids = [client.create_flow_run(flow_id) for _ in range(runs)]
    states = [wait_finished(client, run_id, timeout=600).state for run_id in ids]
    elapsed = time.perf_counter() - start
    status = Path(f"/proc/{agent_pid}/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    return {
        "runs": runs,
        "succeeded": states.count("Success"),
        "seconds": round(elapsed, 2),
        "runs_per_minute": round(runs / elapsed * 60, 1),
        "agent_peak_memory_mb": round(peak_kb / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hw-pickup-"))
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start()
    env = {**os.environ, "HEADWATER__HOME": str(home), "HEADWATER__API__URL": server.url}
    agent = subprocess.Popen(
        [sys.executable, "-m", "headwater", "agent", "local", "start", "-l", "pickup", "--no-hostname-label",
         "--name", "pickup-agent"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with Client(server.url) as client:
            client.create_project("bench")
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON document only
                flow_id = client.register(trivial_flow(home), "bench")
            deadline = time.monotonic() + 30
            while not client.list_agents() and time.monotonic() < deadline:
                time.sleep(0.1)
            wait_finished(client, client.create_flow_run(flow_id))  # warm the agent and the caches
            results = {
                "first_task": first_task(client, flow_id, 5 if args.quick else 30),
                "throughput": throughput(client, flow_id, 20 if args.quick else 100, agent.pid),
            }
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        server.stop()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
