"""The demo: an ETL flow run in-process with a progress display (``make demo``).

It shows parameters, data passing, fan-out run in parallel, a retry, a
skipped branch and a clean-up task that always runs.
"""

from __future__ import annotations

import random
import sys
import time

from headwater import Flow, Parameter, task
from headwater.core.signals import SKIP
from headwater.core.triggers import always_run

_attempts: dict[str, int] = {}


@task
def extract(n: int) -> list[int]:
    """Pretend to read ``n`` rows from a source."""
    time.sleep(0.2)
    return list(range(1, n + 1))


@task
def transform(rows: list[int], factor: int) -> list[int]:
    time.sleep(0.3)
    return [r * factor for r in rows]


@task(max_retries=2, retry_delay=0.2)
def enrich(rows: list[int]) -> list[dict[str, int]]:
    """Fails on its first attempt, like a flaky API, then succeeds."""
    _attempts["enrich"] = _attempts.get("enrich", 0) + 1
    if _attempts["enrich"] == 1:
        raise ConnectionError("the enrichment API timed out")
    return [{"value": r, "bucket": r % 3} for r in rows]


@task
def summarize(rows: list[dict[str, int]]) -> dict[int, int]:
    time.sleep(0.3)
    totals: dict[int, int] = {}
    for row in rows:
        totals[row["bucket"]] = totals.get(row["bucket"], 0) + row["value"]
    return totals


@task
def archive(rows: list[int]) -> None:
    raise SKIP("archiving is off in the demo")


@task
def load(totals: dict[int, int], rows: list[dict[str, int]]) -> str:
    return f"loaded {len(rows)} rows in {len(totals)} buckets"


@task(trigger=always_run)
def cleanup() -> str:
    return "temporary files removed"


def build() -> Flow:
    with Flow("etl") as flow:
        n = Parameter("rows", default=12)
        factor = Parameter("factor", default=10)
        rows = extract(n)
        enriched = enrich(transform(rows, factor))
        archive(rows)
        loaded = load(summarize(enriched), enriched)
        cleanup(upstream_tasks=[loaded])
    return flow


#: The flow, at module level so `headwater register examples/etl.py` finds it.
flow = build()


def main() -> int:
    from headwater.engine.progress import ConsoleProgress, format_states
    from headwater.executors import LocalDaskExecutor

    random.seed(0)
    print(f"running flow {flow.name!r} ({len(flow)} tasks) with LocalDaskExecutor(threads)\n")
    state = flow.run(
        parameters={"rows": 12},
        executor=LocalDaskExecutor(scheduler="threads", num_workers=4),
        state_handlers=[ConsoleProgress(total=len(flow))],
    )
    print()
    print(format_states(state))
    return 0 if state.is_successful() else 1


if __name__ == "__main__":
    sys.exit(main())
