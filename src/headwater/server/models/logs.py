"""Log queries: batched append, paged reads per flow run. Route: ``server/api/logs.py``."""

from __future__ import annotations

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from headwater.schemas.logs import LogBatch, LogPage, LogRecord
from headwater.server.database.orm import FlowRunRow, LogRow
from headwater.server.errors import TooLarge
from headwater.server.models.common import get_or_404


def append_logs(session: Session, flow_run_id: str, body: LogBatch, max_batch: int) -> int:
    """Store the batch (all or nothing); returns how many records were stored.

    A batch with a ``batch_id`` already stored for this run (a client's retry after the
    answer to its first try was lost) is not stored again: the answer is the count stored then.
    """
    if len(body.records) > max_batch:
        raise TooLarge(
            f"a log batch holds at most {max_batch} records, this one {len(body.records)}: send smaller batches"
        )
    get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    if body.batch_id is not None:
        # Two tries of one batch may arrive together (both sent while the server was stalled): the run's
        # row lock orders them on PostgreSQL; on SQLite every write transaction is serialized already.
        session.execute(select(FlowRunRow.id).where(FlowRunRow.id == flow_run_id).with_for_update())
        stored = session.scalar(
            select(func.count())
            .select_from(LogRow)
            .where(LogRow.flow_run_id == flow_run_id, LogRow.batch_id == body.batch_id)
        )
        if stored:
            session.commit()
            return int(stored)
    session.execute(
        insert(LogRow),
        [{"flow_run_id": flow_run_id, "batch_id": body.batch_id, **record.model_dump()} for record in body.records],
    )
    session.commit()
    return len(body.records)


def read_logs(session: Session, flow_run_id: str, offset: int = 0, limit: int = 1000) -> LogPage:
    """Records in the order they were stored, from ``offset``."""
    get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    rows = session.scalars(
        select(LogRow).where(LogRow.flow_run_id == flow_run_id).order_by(LogRow.id).offset(offset).limit(limit)
    ).all()
    records = [
        LogRecord(
            id=r.id,
            flow_run_id=r.flow_run_id,
            timestamp=r.timestamp,
            level=r.level,
            message=r.message,
            name=r.name,
            task_slug=r.task_slug,
        )
        for r in rows
    ]
    return LogPage(records=records, next_offset=offset + len(records))
