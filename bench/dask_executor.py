"""DaskExecutor against raw Dask on the same cluster (issue 15). Prints one JSON document.

    .venv/bin/python bench/dask_executor.py [--sizes 1000 10000 100000] [--rounds 5]

(Not ``bench/dask.py``: run as a script, a file of that name first on ``sys.path``
would hide the ``dask`` package from ``distributed`` and from ``bench/engine.py``.)

One ``distributed.LocalCluster`` of 2 worker processes with 1 thread each (as
``bench/engine.py``), kept for the whole run. For each N, ``--rounds`` rounds,
each round timing the two sides back to back (which goes first alternates), so
the machine's drift hits both alike:

- **raw Dask (the baseline)**: a fresh ``distributed.Client(address)``, then
  ``client.map(inc, range(N), pure=False)`` and ``client.gather`` of the futures,
  then the client closed — the same trivial function, and a client connected
  and closed per round as the executor does per flow run.
- **headwater**: ``flow.run(executor=DaskExecutor(address=...))`` on a flow of N
  independent tasks calling the same function, a fresh executor per run (it
  connects its own client and closes it). The flow is built once, outside the
  timing; the run includes headwater's checks, planning, the final states and
  the flow's state.

Each round's ratio is headwater / raw of that round; the figure is the median of
the rounds' ratios (target ≤ 1.15× at N = 10,000), and the best is reported too.
Beside wall time, the CPU time all the cluster's processes spent (this process:
client and scheduler; the two workers) is compared the same way: on a machine
other work shares, it moves less than wall time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from typing import Any

from headwater import Flow, task
from headwater.executors import DaskExecutor

TARGET = 1.15


def inc(x: int = 0) -> int:
    return x + 1


def independent_flow(n: int) -> Flow:
    t = task(inc)
    with Flow("independent") as flow:
        for _ in range(n):
            t()
    return flow


class Clock:
    """Wall time, and the CPU time of this process (client and scheduler) and of the workers."""

    def __init__(self, worker_pids: list[int]) -> None:
        import psutil

        self.processes = [psutil.Process(), *(psutil.Process(pid) for pid in worker_pids)]

    def _cpu(self) -> list[float]:
        return [sum(p.cpu_times()[:2]) for p in self.processes]

    def time(self, fn: Any) -> tuple[float, float]:
        """``fn()``'s wall seconds and the CPU seconds all the cluster's processes spent on it."""
        gc.collect()
        before = self._cpu()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        return elapsed, sum(after - b for after, b in zip(self._cpu(), before, strict=True))


def raw_round(address: str, n: int) -> None:
    """A fresh client maps ``inc`` over N values and gathers the results."""
    from distributed import Client

    with Client(address) as client:
        futures = client.map(inc, range(n), pure=False)
        results = client.gather(futures)
        del futures
    assert len(results) == n


def headwater_round(address: str, flow: Flow) -> None:
    """``flow.run`` with a fresh DaskExecutor connected to ``address``."""
    state = flow.run(executor=DaskExecutor(address=address))
    assert state.is_successful(), state.message


def measure(address: str, clock: Clock, n: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds of both sides at N tasks; each round's ratio, their median and best."""
    flow = independent_flow(n)
    if n <= 10_000:  # warm both paths (imports, the workers' first unpickling of the functions)
        raw_round(address, min(n, 1_000))
        headwater_round(address, independent_flow(min(n, 1_000)))
    raw: list[tuple[float, float]] = []
    hw: list[tuple[float, float]] = []
    for i in range(rounds):
        if i % 2 == 0:
            raw.append(clock.time(lambda: raw_round(address, n)))
            hw.append(clock.time(lambda: headwater_round(address, flow)))
        else:
            hw.append(clock.time(lambda: headwater_round(address, flow)))
            raw.append(clock.time(lambda: raw_round(address, n)))
        print(f"N={n} round {i + 1}: raw {raw[-1][0]:.3f}s headwater {hw[-1][0]:.3f}s", file=sys.stderr, flush=True)
    raw_s, hw_s = [r[0] for r in raw], [h[0] for h in hw]
    ratios = [h / r for h, r in zip(hw_s, raw_s, strict=True)]
    cpu_ratios = [h[1] / r[1] for h, r in zip(hw, raw, strict=True)]
    median = statistics.median(ratios)
    return {
        "tasks": n,
        "rounds": rounds,
        "raw_s": [round(t, 3) for t in raw_s],
        "headwater_s": [round(t, 3) for t in hw_s],
        "ratios": [round(r, 3) for r in ratios],
        "ratio_median": round(median, 3),
        "ratio_best": round(min(ratios), 3),
        "raw_us_per_task_median": round(statistics.median(raw_s) / n * 1e6, 1),
        "headwater_us_per_task_median": round(statistics.median(hw_s) / n * 1e6, 1),
        # CPU time of the cluster's processes (client + scheduler here, and the 2 workers):
        # less swayed than wall time when other work shares the machine's cores
        "cpu_ratios": [round(r, 3) for r in cpu_ratios],
        "cpu_ratio_median": round(statistics.median(cpu_ratios), 3),
    }


def run(sizes: list[int], rounds: int) -> dict[str, Any]:
    """Start the 2-worker cluster and measure every size on it."""
    from distributed import Client, LocalCluster

    results: dict[str, Any] = {}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            worker_pids = [int(pid) for pid in client.run(os.getpid).values()]
        clock = Clock(worker_pids)
        for n in sizes:
            results[str(n)] = measure(cluster.scheduler_address, clock, n, rounds)
            print(json.dumps({str(n): results[str(n)]}), file=sys.stderr, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000], help="numbers of tasks")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per size")
    args = parser.parse_args()
    import logging

    from headwater.engine.logs import configure_logging

    configure_logging(level="WARNING")  # the run's INFO lines are not part of the measurement
    logging.getLogger("distributed").setLevel(logging.ERROR)
    started = time.perf_counter()
    sizes = run(args.sizes, args.rounds)
    target = sizes.get("10000")
    out: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": sys.platform},
        "workers": 2,
        "threads_per_worker": 1,
        "sizes": sizes,
        "target_ratio_median_at_10000": TARGET,
        "met": None if target is None else target["ratio_median"] <= TARGET,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
