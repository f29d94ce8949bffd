"""Retention: delete finished runs past a window, in short batches, and the server's periodic prune.

A run is pruned when it is finished (Success, Failed, Cancelled) and finished — its last
change, ``updated`` — before the cutoff (now minus the window); with it go its task runs,
logs, labels and state history. Deletion runs in batches of ``server.prune_batch_size``
runs, one short transaction each, with a pause as long as the batch after each: claims and
run creation wait at most one batch for SQLite's write lock (on PostgreSQL they touch other
rows and don't wait at all). ``bench/history.py`` measures claims during a prune.

**Refusal.** An unfinished run (Scheduled, Submitted, Running, Cancelling) that was due
before the cutoff means the window reaches back into runs that never finished — stuck,
or forgotten. A prune asked for (``POST /runs/prune``, ``headwater runs prune``) is then
refused, naming those runs and the fix: cancel them, or choose a window longer than the
oldest one's age. The periodic prune (``server.prune_older_than``) never refuses: it prunes
the finished runs and logs a warning naming the unfinished ones it left. Unfinished runs are
never deleted by either. Route: ``server/api/retention.py``; CLI: ``cli/runs.py``.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from headwater.config.settings import ServerSettings
from headwater.core.durations import format_duration
from headwater.core.run_states import FINISHED, FlowRunState
from headwater.schemas.retention import PruneResult
from headwater.server.database.orm import FlowRunLabelRow, FlowRunRow, FlowRunStateRow, LogRow, TaskRunRow
from headwater.server.errors import Conflict
from headwater.server.models.common import utcnow
from headwater.server.services.periodic import PeriodicService

logger = logging.getLogger("headwater.server.retention")

RUNS = cast(Table, FlowRunRow.__table__)
#: The tables holding rows of a run, deleted before the run itself.
CHILDREN: dict[str, Table] = {
    "logs": cast(Table, LogRow.__table__),
    "task_runs": cast(Table, TaskRunRow.__table__),
    "states": cast(Table, FlowRunStateRow.__table__),
    "labels": cast(Table, FlowRunLabelRow.__table__),
}
FINISHED_STATES = sorted(FINISHED)
UNFINISHED_STATES = sorted(set(FlowRunState) - FINISHED)
#: Unfinished runs a refusal names by id.
SHOWN = 5


def prunable(cutoff: datetime.datetime) -> Any:
    """The condition for a run to be pruned: finished before ``cutoff`` (index ``ix_flow_runs_state_updated``)."""
    return RUNS.c.state.in_(FINISHED_STATES) & (RUNS.c.updated < cutoff)


def overdue_unfinished(session: Session, cutoff: datetime.datetime) -> tuple[int, list[Any]]:
    """How many unfinished runs were due before ``cutoff``, and the oldest few (id, state, due)."""
    where = RUNS.c.state.in_(UNFINISHED_STATES) & (RUNS.c.scheduled_start_time < cutoff)
    count = session.scalar(select(func.count()).select_from(RUNS).where(where)) or 0
    oldest = session.execute(
        select(RUNS.c.id, RUNS.c.state, RUNS.c.scheduled_start_time)
        .where(where)
        .order_by(RUNS.c.scheduled_start_time)
        .limit(SHOWN)
    ).all()
    return count, list(oldest)


def check_window(session: Session, older_than: float, now: datetime.datetime) -> None:
    """Conflict (409) when an unfinished run was due before the window: the window would reach past it."""
    count, oldest = overdue_unfinished(session, now - datetime.timedelta(seconds=older_than))
    if not count:
        return
    age = (now - oldest[0].scheduled_start_time).total_seconds()
    longer = format_duration(float(int(age // 86400 + 1) * 86400))
    shown = ", ".join(f"{row.id} ({row.state}, due {row.scheduled_start_time:%Y-%m-%d %H:%M} UTC)" for row in oldest)
    more = f" and {count - len(oldest)} more" if count > len(oldest) else ""
    raise Conflict(
        f"a prune of runs older than {format_duration(older_than)} is refused: {count} unfinished run(s) were due "
        f"before then and never finished: {shown}{more}. Prune never deletes unfinished runs; finish or cancel "
        f"them first (`headwater cancel RUN_ID`), or choose a window longer than the oldest one's age, e.g. "
        f"--older-than {longer}"
    )


def count_prunable(session: Session, cutoff: datetime.datetime) -> dict[str, int]:
    """The runs a prune at ``cutoff`` would delete, and their rows in each child table."""
    ids = select(RUNS.c.id).where(prunable(cutoff))
    counts = {"runs": session.scalar(select(func.count()).select_from(ids.subquery())) or 0}
    for name, table in CHILDREN.items():
        if name != "labels":
            counts[name] = session.scalar(select(func.count()).where(table.c.flow_run_id.in_(ids))) or 0
    return counts


def delete_batch(session: Session, cutoff: datetime.datetime, batch_size: int) -> dict[str, int]:
    """Delete up to ``batch_size`` prunable runs and their rows in one transaction; what was deleted."""
    query = select(RUNS.c.id).where(prunable(cutoff)).limit(batch_size)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # two servers' prunes take different runs
    ids = list(session.scalars(query))
    deleted = {"runs": 0, "task_runs": 0, "logs": 0, "states": 0}
    if ids:
        for name, table in CHILDREN.items():
            rows = session.execute(delete(table).where(table.c.flow_run_id.in_(ids))).rowcount  # type: ignore[attr-defined]
            if name in deleted:
                deleted[name] = rows
        deleted["runs"] = session.execute(delete(RUNS).where(RUNS.c.id.in_(ids))).rowcount  # type: ignore[attr-defined]
    session.commit()
    return deleted


def prune(
    sessions: Callable[[], Session],
    older_than: float,
    batch_size: int,
    *,
    max_runs: int | None = None,
    dry_run: bool = False,
    check: bool = True,
    stop: threading.Event | None = None,
    max_seconds: float | None = None,
) -> PruneResult:
    """Delete the finished runs past the window (at most ``max_runs``), a batch per transaction.

    With ``check``, refuse (Conflict) when an unfinished run was due before the window
    (``check_window``). ``stop`` ends the prune between two batches, and so does
    ``max_seconds`` once that long has passed (an API request must answer in time).
    """
    began = time.monotonic()
    now = utcnow()
    cutoff = now - datetime.timedelta(seconds=older_than)
    with sessions() as session:
        if check:
            check_window(session, older_than, now)
        if dry_run:
            counts = count_prunable(session, cutoff)
            return PruneResult(cutoff=cutoff, dry_run=True, batches=0, remaining=counts["runs"], **counts)
    total = {"runs": 0, "task_runs": 0, "logs": 0, "states": 0}
    batches = 0
    while max_runs is None or total["runs"] < max_runs:
        size = batch_size if max_runs is None else min(batch_size, max_runs - total["runs"])
        started = time.monotonic()
        with sessions() as session:
            deleted = delete_batch(session, cutoff, size)
        batches += 1
        for key, value in deleted.items():
            total[key] += value
        out_of_time = max_seconds is not None and time.monotonic() - began >= max_seconds
        if deleted["runs"] < size or out_of_time or (stop is not None and stop.is_set()):
            break
        # as long as the batch took: other writers get the database at least half of the time
        if stop is not None:
            stop.wait(time.monotonic() - started)
        else:
            time.sleep(time.monotonic() - started)
    with sessions() as session:
        remaining = session.scalar(select(func.count()).select_from(RUNS).where(prunable(cutoff))) or 0
    return PruneResult(cutoff=cutoff, dry_run=False, batches=batches, remaining=remaining, **total)


class RetentionService(PeriodicService):
    """Prunes runs past ``server.prune_older_than`` every ``server.prune_interval`` seconds, in a daemon thread.

    It prunes finished runs only and never refuses: unfinished runs due before the window are
    left, and named in a warning on the ``headwater.server.retention`` logger.
    """

    name, what, logger = "headwater-retention", "retention prune", logger

    def __init__(self, sessions: Callable[[], Session], settings: ServerSettings) -> None:
        self._sessions = sessions
        self._settings = settings
        super().__init__()

    def interval(self) -> float:
        return self._settings.prune_interval

    def run_once(self) -> PruneResult | None:
        return self.prune_once()

    def prune_once(self) -> PruneResult | None:
        """One round: prune everything past the window, and say what was left."""
        window = self._settings.prune_older_than
        if window is None:
            return None
        result = prune(self._sessions, window, self._settings.prune_batch_size, check=False, stop=self._stop)
        if result.runs:
            logger.info(
                "pruned %d finished run(s) that finished before %s UTC (%d task runs, %d log lines, %d states) "
                "in %d batch(es)",
                result.runs, f"{result.cutoff:%Y-%m-%d %H:%M:%S}", result.task_runs, result.logs, result.states,
                result.batches,
            )  # fmt: skip
        with self._sessions() as session:
            count, oldest = overdue_unfinished(session, result.cutoff)
        if count:
            shown = ", ".join(f"{row.id} ({row.state})" for row in oldest)
            logger.warning(
                "retention (server.prune_older_than = %s) skipped %d unfinished run(s) due before %s UTC, which it "
                "never deletes: %s%s; finish or cancel them",
                format_duration(window), count, f"{result.cutoff:%Y-%m-%d %H:%M:%S}", shown,
                " …" if count > len(oldest) else "",
            )  # fmt: skip
        return result
