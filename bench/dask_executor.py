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
"""

from __future__ import annotations

import argparse
import gc
import json
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


def raw_round(address: str, n: int) -> float:
    """Seconds for a fresh client to map ``inc`` over N values and gather the results."""
    from distributed import Client

    gc.collect()
    start = time.perf_counter()
    with Client(address) as client:
        futures = client.map(inc, range(n), pure=False)
        results = client.gather(futures)
        del futures
    elapsed = time.perf_counter() - start
    assert len(results) == n
    return elapsed


def headwater_round(address: str, flow: Flow) -> float:
    """Seconds for ``flow.run`` with a fresh DaskExecutor connected to ``address``."""
    gc.collect()
    start = time.perf_counter()
    state = flow.run(executor=DaskExecutor(address=address))
    elapsed = time.perf_counter() - start
    assert state.is_successful(), state.message
    return elapsed


def measure(address: str, n: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds of both sides at N tasks; each round's ratio, their median and best."""
    flow = independent_flow(n)
    if n <= 10_000:  # warm both paths (imports, the workers' first unpickling of the functions)
        raw_round(address, min(n, 1_000))
        headwater_round(address, independent_flow(min(n, 1_000)))
    raw_s: list[float] = []
    hw_s: list[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            raw_s.append(raw_round(address, n))
            hw_s.append(headwater_round(address, flow))
        else:
            hw_s.append(headwater_round(address, flow))
            raw_s.append(raw_round(address, n))
        print(f"N={n} round {i + 1}: raw {raw_s[-1]:.3f}s headwater {hw_s[-1]:.3f}s", file=sys.stderr, flush=True)
    ratios = [h / r for h, r in zip(hw_s, raw_s, strict=True)]
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
        for n in sizes:
            results[str(n)] = measure(cluster.scheduler_address, n, rounds)
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
