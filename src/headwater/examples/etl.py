"""The example ETL flow: parameters, data passing, fan-out in parallel, a retry,
a skipped branch, a clean-up task that always runs, and environment callbacks.

``headwater quickstart`` registers and runs it through a server and an agent;
``python -m headwater.examples.etl`` runs it here and now with a progress display.
"""

from __future__ import annotations

import logging
import random
import sys
import time

from headwater import Flow, Parameter, task
from headwater.core.signals import SKIP
from headwater.core.triggers import always_run
from headwater.environments import LocalEnvironment
from headwater.executors import LocalDaskExecutor

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


def _started() -> None:
    logging.getLogger("headwater.examples").info("on_start: the flow-run process is ready")


def _finished() -> None:
    logging.getLogger("headwater.examples").info("on_exit: cleaning up after the flow")


def build() -> Flow:
    environment = LocalEnvironment(
        executor=LocalDaskExecutor(scheduler="threads", num_workers=4),
        labels=["demo"],
        on_start=_started,
        on_exit=_finished,
    )
    with Flow("etl", environment=environment) as flow:
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
