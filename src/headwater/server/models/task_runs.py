"""Task-run queries: batched upserts by slug, and the list per flow run. Route: ``server/api/task_runs.py``."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headwater.core.run_states import FINISHED
from headwater.schemas.task_runs import TaskRun, TaskRunBatch, TaskRunUpdate
from headwater.server.database.orm import FlowRunRow, TaskRunRow
from headwater.server.errors import Conflict
from headwater.server.models.common import get_or_404, new_id, utcnow


def _task_run(row: TaskRunRow) -> TaskRun:
    return TaskRun(
        id=row.id,
        flow_run_id=row.flow_run_id,
        task_slug=row.task_slug,
        state=row.state,
        state_message=row.state_message,
        attempts=row.attempts,
        start_time=row.start_time,
        end_time=row.end_time,
        updated=row.updated,
    )


def upsert_task_runs(session: Session, flow_run_id: str, body: TaskRunBatch) -> list[TaskRun]:
    """Create or update each task run of the batch (matched by slug); the last of a slug wins.

    Conflict (409) when the flow run is finished: its task runs are final. Two
    batches creating the same task run at once: the one that loses the race on
    the unique (run, slug) key is applied again, as an update.
    """
    latest = {update.task_slug: update for update in body.task_runs}
    for attempt in range(3):
        try:
            return _upsert(session, flow_run_id, latest)
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise Conflict(
                    f"task runs of flow run {flow_run_id} kept being created by another request at the same "
                    "moment; send the batch again"
                ) from None
    raise AssertionError("unreachable")


def _upsert(session: Session, flow_run_id: str, latest: dict[str, TaskRunUpdate]) -> list[TaskRun]:
    run = get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    if run.state in FINISHED:
        raise Conflict(
            f"flow run {flow_run_id} is {run.state} ({run.state_message or 'no message'}): the task runs of a "
            "finished run are final and take no more states"
        )
    existing = {
        row.task_slug: row
        for row in session.scalars(
            select(TaskRunRow).where(TaskRunRow.flow_run_id == flow_run_id, TaskRunRow.task_slug.in_(latest))
        )
    }
    now = utcnow()
    rows = []
    for slug, update in latest.items():
        row = existing.get(slug)
        if row is None:
            row = TaskRunRow(id=new_id(), flow_run_id=flow_run_id, task_slug=slug)
            session.add(row)
        row.state, row.state_message, row.attempts = update.state, update.message, update.attempts
        row.start_time = update.start_time or row.start_time
        row.end_time = update.end_time or row.end_time
        row.updated = now
        rows.append(row)
    session.commit()
    return [_task_run(r) for r in rows]


def list_task_runs(session: Session, flow_run_id: str) -> list[TaskRun]:
    get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    rows = session.scalars(
        select(TaskRunRow)
        .where(TaskRunRow.flow_run_id == flow_run_id)
        .order_by(TaskRunRow.updated, TaskRunRow.task_slug)
    )
    return [_task_run(r) for r in rows]
