"""Engine benchmarks (issue 2). Prints one JSON document; baselines are measured in the same run.

    .venv/bin/python bench/engine.py [--quick]

Figures:
- ``local_independent`` / ``local_chain``: N = 1,000, 10,000 and 100,000 trivial tasks with
  LocalExecutor (100,000 not with ``--quick``). Each round builds the flow with the
  functional API (``with Flow(...)`` and task calls), runs it with ``flow.run()``, and
  times a plain-Python loop calling the same function right before and after; rounds
  alternate sizes, so drift hits every figure alike. Times are this thread's CPU time
  (``time.thread_time``: LocalExecutor runs every task in the calling thread; other
  processes on the machine don't count), wall time is shown next to it. Per figure: the
  median µs per task, the plain loop's µs per call, and the median of the rounds' ratios to
  it (``run_ratio``, ``build_ratio``) — the figure to compare across machines and days.
  Targets: run overhead ≤ 25 µs per task at 10,000 and building ≤ running per task;
  ``gc_growth`` (per-task run time at 100,000 over 1,000) is reported.
- ``dask``: 2,000 independent tasks, measured by ``bench/dask_executor.py`` (its
  ``run``): DaskExecutor on a 2-worker LocalCluster, a fresh executor per flow run, against
  raw ``client.map`` + ``gather`` of the same function through a fresh client per round,
  rounds interleaved; the median of the rounds' ratios (best beside it). Target ≤ 1.3×.
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
from headwater.executors import LocalExecutor


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


PLAIN_CALLS = 100_000  # the baseline loop's length: long enough to time steadily


def _clocks() -> tuple[float, float]:
    return time.thread_time(), time.perf_counter()


def _plain_us(kind: str) -> float:
    """The plain loop's CPU µs per call, best of 3 (a loop this short is only slowed, never sped up)."""
    plain = plain_independent if kind == "independent" else plain_chain
    best = float("inf")
    for _ in range(3):
        cpu = time.thread_time()
        plain(PLAIN_CALLS)
        best = min(best, time.thread_time() - cpu)
    return best / PLAIN_CALLS * 1e6


def _round(kind: str, n: int, executor: LocalExecutor) -> dict[str, float]:
    """One round: plain loop, build, run, plain loop. Per-task µs (CPU; wall) and the baseline."""
    build = independent_flow if kind == "independent" else chain_flow
    gc.collect()
    before = _plain_us(kind)
    cpu, wall = _clocks()
    flow = build(n)
    cpu_built, wall_built = _clocks()
    state = flow.run(executor=executor)
    cpu_ran, wall_ran = _clocks()
    assert state.is_successful(), state
    del state, flow
    gc.collect()
    plain = (before + _plain_us(kind)) / 2
    per = 1e6 / n
    return {
        "build_us": (cpu_built - cpu) * per,
        "run_us": (cpu_ran - cpu_built) * per,
        "build_wall_us": (wall_built - wall) * per,
        "run_wall_us": (wall_ran - wall_built) * per,
        "plain_us": plain,
    }


def local(kind: str, sizes: list[int], rounds: int) -> dict[str, Any]:
    executor = LocalExecutor()
    independent_flow(100).run(executor=executor)  # warm: imports, logging, settings
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            samples[n].append(_round(kind, n, executor))
    figures: dict[str, Any] = {}
    for n, rows in samples.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        run_ratio = statistics.median(r["run_us"] / r["plain_us"] for r in rows)
        build_ratio = statistics.median(r["build_us"] / r["plain_us"] for r in rows)
        figures[str(n)] = {
            "tasks": n,
            "rounds": len(rows),
            "run_us_per_task": round(med["run_us"], 2),
            "build_us_per_task": round(med["build_us"], 2),
            "plain_us_per_call": round(med["plain_us"], 4),
            "run_ratio": round(run_ratio, 1),
            "build_ratio": round(build_ratio, 1),
            "build_over_run": round(statistics.median(r["build_us"] / r["run_us"] for r in rows), 2),
            "overhead_us_per_task": round(med["run_us"] - med["plain_us"], 2),
            "run_wall_us_per_task": round(med["run_wall_us"], 2),
            "build_wall_us_per_task": round(med["build_wall_us"], 2),
        }
    result: dict[str, Any] = {"clock": "thread CPU time (wall time in *_wall_*)", "sizes": figures}
    at = figures.get("10000")
    if at is not None:
        result["target_us_per_task"] = 25
        result["met"] = at["overhead_us_per_task"] <= 25 and at["build_over_run"] <= 1.0
    if "1000" in figures and "100000" in figures:
        result["gc_growth"] = round(figures["100000"]["run_ratio"] / figures["1000"]["run_ratio"], 2)
    return result


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
    """The Dask figure of ``bench/dask_executor.py`` at N tasks (the same cluster, sides and rounds)."""
    import dask_executor  # bench/dask_executor.py, next to this file

    figure = dask_executor.run([n], repeat)[str(n)]
    return {
        **figure,
        "workers": 2,
        "target_ratio_median": 1.3,
        "met": figure["ratio_median"] <= 1.3,
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
    parser.add_argument(
        "--only", nargs="+", choices=["local", "memory", "dask", "import"], help="measure only these figures"
    )
    args = parser.parse_args()
    wanted = set(args.only or ("local", "memory", "dask", "import"))
    repeat = 2 if args.quick else 5
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rounds = 3 if args.quick else 5
    import logging

    from headwater.engine.logs import configure_logging

    configure_logging(level="WARNING")  # the run's INFO lines are not part of the measurement
    logging.getLogger("distributed").setLevel(logging.ERROR)
    results: dict[str, Any] = {"machine": {"python": sys.version.split()[0], "platform": sys.platform}}
    if "local" in wanted:
        results["local_independent"] = local("independent", sizes, rounds)
        results["local_chain"] = local("chain", sizes, rounds)
    if "memory" in wanted:
        results["memory"] = memory(10_000)
    if "dask" in wanted:
        results["dask"] = dask(2_000, repeat)
    if "import" in wanted:
        results["import"] = import_time(10 if args.quick else 20)
    results["all_met"] = all(v.get("met", True) for v in results.values() if isinstance(v, dict))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
