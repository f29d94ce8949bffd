"""Pick-up benchmarks (issues 4 and 15): warm against cold, in the same run. Prints one JSON document.

    .venv/bin/python bench/pickup.py [--quick] [--samples N] [--runs N] [--rounds N]

- ``first_task``: from ``create_flow_run`` to the flow's first task starting, under a LocalAgent
  already waiting on its claim. Two agent processes wait at once, one warm (the default: each
  run's process forked from its warm starter) and one cold (``--no-warm``: a fresh interpreter
  per run); samples alternate between them, so both see the same machine. Median and p90 per
  agent, with the breakdown from the server's own timestamps: claim (created → submitted_at),
  process start + imports + fetching the run (submitted_at → Running), flow load + environment
  set-up (Running → first task start). Target (warm) ≤ 100 ms median. For scale, in the same run: what
  making an ``httpx.Client`` costs (its TLS context: every flow-run process makes one API client).
- ``throughput``: N runs of a trivial flow (two tasks) created first, then one LocalAgent
  process started to take them (default settings: ``agent.max_workers`` 10), in alternating
  rounds warm, cold, warm, ...: runs per minute from the first run's claim to the last run's
  end (server timestamps), and the peak memory of the agent with everything it started
  (agent, warm starter, flow-run processes), sampled every 100 ms as the sum of RSS (counts
  pages shared after a fork once per process) and of PSS (shares them out). Target (warm)
  ≥ 1,000 runs per minute.
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
import threading
import time
from pathlib import Path
from typing import Any

from headwater import Flow, task
from headwater.client import Client
from headwater.environments import LocalEnvironment
from headwater.server.process import ServerProcess
from headwater.storage import Local

FINISHED = ["Success", "Failed", "Cancelled"]


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
        if run.state in FINISHED:
            return run
        time.sleep(0.02)
    raise TimeoutError(f"run {run_id} did not finish")


def seconds(a: datetime.datetime, b: datetime.datetime) -> float:
    return (b - a).total_seconds()


def start_agent(env: dict[str, str], label: str, warm: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "headwater", "agent", "local", "start", "-l", label, "--no-hostname-label",
               "--name", f"bench-{label}"]  # fmt: skip
    if not warm:
        command.append("--no-warm")
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_agent(agent: subprocess.Popen[bytes]) -> None:
    agent.terminate()
    try:
        agent.wait(timeout=60)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


def wait_ready(client: Client, flow_id: str, label: str) -> None:
    """One run through the agent of ``label``: it is registered, its warm starter (if any) ready, caches warm."""
    run = wait_finished(client, client.create_flow_run(flow_id, labels=[label]), timeout=120)
    assert run.state == "Success", run


def sample(client: Client, flow_id: str, label: str) -> dict[str, float]:
    began = datetime.datetime.now(datetime.UTC)
    run_id = client.create_flow_run(flow_id, labels=[label])
    run = wait_finished(client, run_id)
    assert run.state == "Success", run
    first_start = min(t.start_time for t in client.get_task_runs(run_id) if t.start_time is not None)
    assert run.submitted_at is not None and run.start_time is not None
    return {
        "total": seconds(began, first_start),
        "claim": seconds(run.created, run.submitted_at),
        "process_start_import_fetch": seconds(run.submitted_at, run.start_time),
        "flow_load_and_setup": seconds(run.start_time, first_start),
    }


def summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    totals = sorted(s["total"] for s in samples)
    return {
        "samples": len(samples),
        "median_ms": ms(totals),
        "p90_ms": round(totals[max(0, int(len(totals) * 0.9) - 1)] * 1000, 1),
        "breakdown_median_ms": {key: ms([s[key] for s in samples]) for key in samples[0] if key != "total"},
    }


def first_task(client: Client, flow_id: str, samples: int) -> dict[str, Any]:
    """Alternate samples between the warm and the cold agent (both waiting on their claims)."""
    import httpx

    got: dict[str, list[dict[str, float]]] = {"warm": [], "cold": []}
    clients: list[float] = []
    for i in range(samples * 2):
        mode = ("warm", "cold")[i % 2]
        got[mode].append(sample(client, flow_id, f"pickup-{mode}"))
        began = time.perf_counter()
        httpx.Client().close()  # what the flow-run process's API client costs to make (its TLS context)
        clients.append(time.perf_counter() - began)
        time.sleep(0.1)
    warm, cold = summary(got["warm"]), summary(got["cold"])
    return {
        "warm": warm,
        "cold": cold,
        "context_httpx_client_construction_median_ms": round(statistics.median(clients) * 1000, 1),
        "warm_vs_cold_median": round(warm["median_ms"] / cold["median_ms"], 3),
        "target_warm_median_ms": 100,
        "met": warm["median_ms"] <= 100,
    }


class MemorySampler:
    """Every ``interval`` s: RSS and PSS summed over a process and all its descendants; keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(entry))
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._done.wait(self.interval):
            rss = pss = 0
            pids = self._tree()
            for pid in pids:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1]) * 1024
                            break
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(pids))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, those of its children it reaped), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def throughput_round(client: Client, env: dict[str, str], flow_id: str, runs: int, warm: bool, label: str,
                     server_pid: int) -> dict[str, Any]:  # fmt: skip
    """``runs`` runs created first, then an agent started to take them; runs/min between server timestamps.

    Also CPU seconds per run: the server's, the agent's own, and the runs' processes' (reaped by the
    agent when cold; by its warm starter, whose own CPU is counted with the agent's, when warm).
    """
    ids = [client.create_flow_run(flow_id, labels=[label]) for _ in range(runs)]
    began = time.perf_counter()
    agent = start_agent(env, label, warm)
    server_before = cpu_seconds(server_pid)[0]
    cpu: dict[str, float] = {}
    try:
        with MemorySampler(agent.pid) as memory:
            deadline = time.monotonic() + 900
            # counted from the rows: a page's ``total`` may be an estimate past the page
            while len(client.list_flow_runs(label=label, state=FINISHED, limit=runs + 10)) < runs:
                assert time.monotonic() < deadline, f"{label}: runs did not finish"
                assert agent.poll() is None, f"{label}: the agent ended ({agent.returncode})"
                time.sleep(1.0)
        wall = time.perf_counter() - began
        cpu["server"] = cpu_seconds(server_pid)[0] - server_before
        cpu["agent"], cpu["runs"] = cpu_seconds(agent.pid)
        zygotes = [pid for pid in memory._tree() if pid != agent.pid and "headwater.agent.zygote" in
                   Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]  # fmt: skip
        for pid in zygotes:
            own, children = cpu_seconds(pid)
            cpu["agent"] += own
            cpu["runs"] += children
        status = Path(f"/proc/{agent.pid}/status").read_text()
        agent_hwm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    finally:
        stop_agent(agent)
    done = [r for r in client.list_flow_runs(label=label, limit=runs + 10) if r.id in set(ids)]
    first = min(r.submitted_at for r in done if r.submitted_at is not None)
    last = max(r.end_time for r in done if r.end_time is not None)
    span = seconds(first, last)
    return {
        "mode": "warm" if warm else "cold",
        "runs": runs,
        "succeeded": sum(r.state == "Success" for r in done),
        "first_claim_to_last_end_s": round(span, 2),
        "runs_per_minute": round(runs / span * 60, 1),
        "wall_s_including_agent_start": round(wall, 2),
        "peak_rss_sum_mb": round(memory.peak_rss / 2**20, 1),
        "peak_pss_sum_mb": round(memory.peak_pss / 2**20, 1),
        "peak_processes": memory.peak_processes,
        "agent_peak_rss_mb": round(agent_hwm_kb / 1024, 1),
        "cpu_ms_per_run": {key: round(value / runs * 1000, 1) for key, value in cpu.items()},
    }


def throughput(client: Client, env: dict[str, str], flow_id: str, runs: int, rounds: int,
               server_pid: int) -> dict[str, Any]:  # fmt: skip
    got: dict[str, list[dict[str, Any]]] = {"warm": [], "cold": []}
    for i in range(rounds):
        for warm in (True, False) if i % 2 == 0 else (False, True):
            mode = "warm" if warm else "cold"
            got[mode].append(throughput_round(client, env, flow_id, runs if warm else max(runs // 4, 20), warm,
                                              f"tp-{mode}-{i}", server_pid))  # fmt: skip
    out: dict[str, Any] = {}
    for mode, results in got.items():
        out[mode] = {
            "rounds": results,
            "median_runs_per_minute": statistics.median(r["runs_per_minute"] for r in results),
            "max_peak_pss_sum_mb": max(r["peak_pss_sum_mb"] for r in results),
            "max_peak_rss_sum_mb": max(r["peak_rss_sum_mb"] for r in results),
        }
    out["target_warm_runs_per_minute"] = 1000
    out["met"] = out["warm"]["median_runs_per_minute"] >= 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples and runs (a smoke run)")
    parser.add_argument("--samples", type=int, help="pick-up samples per agent (default 30; --quick 5)")
    parser.add_argument("--runs", type=int, help="runs per warm throughput round (default 300; --quick 40)")
    parser.add_argument("--rounds", type=int, help="throughput rounds of each (default 3; --quick 1)")
    parser.add_argument("--only", choices=["first_task", "throughput"], help="one of the two measurements")
    args = parser.parse_args()
    samples = args.samples or (5 if args.quick else 30)
    runs = args.runs or (40 if args.quick else 300)
    rounds = args.rounds or (1 if args.quick else 3)
    home = Path(tempfile.mkdtemp(prefix="hw-pickup-"))
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start(timeout=180)
    env = {**os.environ, "HEADWATER__HOME": str(home), "HEADWATER__API__URL": server.url}
    results: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
    try:
        with Client(server.url) as client:
            client.create_project("bench")
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON document only
                flow_id = client.register(trivial_flow(home), "bench")
            if args.only in (None, "first_task"):
                agents = [start_agent(env, "pickup-warm", True), start_agent(env, "pickup-cold", False)]
                try:
                    wait_ready(client, flow_id, "pickup-warm")
                    wait_ready(client, flow_id, "pickup-cold")
                    results["first_task"] = first_task(client, flow_id, samples)
                    print(json.dumps(results["first_task"]), file=sys.stderr, flush=True)  # kept if a later part fails
                finally:
                    for agent in agents:
                        stop_agent(agent)
            if args.only in (None, "throughput"):
                assert server.process is not None
                results["throughput"] = throughput(client, env, flow_id, runs, rounds, server.process.pid)
    finally:
        server.stop()
    results["load_average_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
