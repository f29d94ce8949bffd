"""Engine benchmarks (issue 2). Prints one JSON document; baselines are measured in the same run.

    .venv/bin/python bench/engine.py [--quick]

Figures:
- ``local_independent`` / ``local_chain``: 10,000 trivial tasks with LocalExecutor;
  engine overhead per task = (flow.run time - plain-Python loop of the same calls) / N.
  Target ≤ 25 µs.
- ``dask``: 2,000 independent tasks with DaskExecutor on a 2-worker LocalCluster against
  raw ``client.map`` + ``gather`` of the same function on the same cluster. Target ≤ 1.3×.
- ``memory``: tracemalloc peak during the 10,000-task run, per task. Aim < 1 KB.
- ``import``: ``python -c "import headwater"`` against ``python -c pass``. Target ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from headwater import Flow, task
from headwater.executors import DaskExecutor, LocalExecutor


def inc(x: int = 0) -> int:
    return x + 1


def independent_flow(n: int) -> Flow:
    t = task(inc)
    with Flow("independent") as flow:
        for _ in range(n):
            t()
    return flow


def chain_flow(n: int) -> Flow:
    t = task(inc)
    with Flow("chain") as flow:
        last = t(0)
        for _ in range(n - 1):
            last = t(last)
    return flow


def plain_independent(n: int) -> None:
    for _ in range(n):
        inc()


def plain_chain(n: int) -> None:
    x = 0
    for _ in range(n):
        x = inc(x)


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def local(kind: str, n: int, repeat: int) -> dict[str, Any]:
    build = independent_flow if kind == "independent" else chain_flow
    plain = plain_independent if kind == "independent" else plain_chain
    t0 = time.perf_counter()
    flow = build(n)
    build_s = time.perf_counter() - t0
    executor = LocalExecutor()
    state = flow.run(executor=executor)
    assert state.is_successful(), state
    run_s = best_of(lambda: flow.run(executor=executor), repeat)
    plain_s = best_of(lambda: plain(n), repeat)
    overhead_us = (run_s - plain_s) / n * 1e6
    return {
        "tasks": n,
        "flow_run_s": round(run_s, 4),
        "plain_python_s": round(plain_s, 6),
        "overhead_us_per_task": round(overhead_us, 2),
        "target_us_per_task": 25,
        "met": overhead_us <= 25,
        "flow_build_us_per_task": round(build_s / n * 1e6, 2),
    }


def memory(n: int) -> dict[str, Any]:
    flow = independent_flow(n)
    executor = LocalExecutor()
    flow.run(executor=executor)  # warm caches (settings, logging, sort)
    gc.collect()
    tracemalloc.start()
    state = flow.run(executor=executor)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert state.is_successful()
    return {
        "tasks": n,
        "peak_bytes": peak,
        "bytes_per_task": round(peak / n, 1),
        "aim_bytes_per_task": 1024,
        "met": peak / n < 1024,
    }


def dask(n: int, repeat: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        flow = independent_flow(n)
        executor = DaskExecutor(address=cluster.scheduler_address)

        def raw() -> None:
            futures = client.map(inc, range(n), pure=False)
            client.gather(futures)
            del futures

        def headwater_run() -> None:
            state = flow.run(executor=executor)
            assert state.is_successful(), state

        raw()
        headwater_run()
        raw_times, hw_times = [], []
        for _ in range(repeat):  # interleave so drift hits both alike
            raw_times.append(best_of(raw, 1))
            hw_times.append(best_of(headwater_run, 1))
    raw_s, hw_s = min(raw_times), min(hw_times)
    return {
        "tasks": n,
        "workers": 2,
        "raw_client_map_s": round(raw_s, 4),
        "dask_executor_s": round(hw_s, 4),
        "ratio": round(hw_s / raw_s, 3),
        "ratio_median": round(statistics.median(hw_times) / statistics.median(raw_times), 3),
        "target_ratio": 1.3,
        "met": hw_s / raw_s <= 1.3,
    }


def import_time(repeat: int) -> dict[str, Any]:
    def timed(code: str) -> float:
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - start)
        return min(runs)

    base = timed("pass")
    total = timed("import headwater")
    return {
        "python_startup_ms": round(base * 1000, 1),
        "import_headwater_ms": round(total * 1000, 1),
        "headwater_only_ms": round((total - base) * 1000, 1),
        "target_ms": 150,
        "met": total * 1000 <= 150,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for a smoke run)")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    import logging

    from headwater.engine.logs import configure_logging

    configure_logging(level="WARNING")  # the run's INFO lines are not part of the measurement
    logging.getLogger("distributed").setLevel(logging.ERROR)
    results = {
        "machine": {"python": sys.version.split()[0], "platform": sys.platform},
        "local_independent": local("independent", 10_000, repeat),
        "local_chain": local("chain", 10_000, repeat),
        "memory": memory(10_000),
        "dask": dask(2_000, repeat),
        "import": import_time(10 if args.quick else 20),
    }
    results["all_met"] = all(v.get("met", True) for v in results.values() if isinstance(v, dict))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
