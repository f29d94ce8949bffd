"""The claim: hand due runs to an agent whose labels match, each run to one agent only.

The label rule (run labels L, agent labels A): **L ⊆ A, and L = ∅ only when
A = ∅** — evaluated in SQL, so a matching run is never starved by older runs
that don't match. Atomicity: on PostgreSQL the candidate rows are locked with
``FOR UPDATE SKIP LOCKED`` (concurrent claimers skip each other's rows); on
SQLite every transaction begins ``IMMEDIATE`` (``database/engine.py``), so
claims are serialized. Either way the UPDATE re-checks ``state = 'Scheduled'``.
Long-polling is the route's business (``server/api/work.py``).
"""

from __future__ import annotations

import datetime

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session

from headwater.core.run_states import FlowRunState
from headwater.schemas.flow_runs import FlowRun
from headwater.server.database.orm import AgentRow, FlowRunLabelRow, FlowRunRow
from headwater.server.models.common import get_or_404, utcnow
from headwater.server.models.flow_runs import read_runs


def label_match(agent_labels: list[str]):  # type: ignore[no-untyped-def]
    """The SQL condition for "a run with these agent labels may take it"."""
    run_label = FlowRunLabelRow.flow_run_id == FlowRunRow.id
    has_labels = exists().where(run_label)
    if not agent_labels:
        return ~has_labels
    outside = exists().where(run_label, FlowRunLabelRow.label.not_in(agent_labels))
    return and_(has_labels, ~outside)


def claim(
    session: Session, agent_id: str, labels: list[str], limit: int, claim_id: str | None = None
) -> list[FlowRun]:
    """Move up to ``limit`` due, matching Scheduled runs to Submitted for this agent; oldest due first.

    Each run claimed gets the next ``attempt`` (its claim number, the fence of every
    later write). With ``claim_id``, a claim sent again (a retry of one whose answer was
    lost) answers the runs the first one took, still Submitted to this agent, and takes no
    others. The answer is read before the commit, so a claim that commits has its answer.
    """
    agent = get_or_404(session, AgentRow, agent_id, "agent")
    now = utcnow()
    agent.last_seen = now
    if agent.labels != labels:  # explain judges by the labels the agent last claimed with
        agent.labels = list(labels)
    if claim_id is not None:
        taken = list(
            session.scalars(
                select(FlowRunRow.id)
                .where(
                    FlowRunRow.agent_id == agent_id,
                    FlowRunRow.claim_id == claim_id,
                    FlowRunRow.state == FlowRunState.SUBMITTED,
                )
                .order_by(FlowRunRow.scheduled_start_time, FlowRunRow.created, FlowRunRow.id)
            )
        )
        if taken:
            again = read_runs(session, taken)
            session.commit()
            return again
    candidates = (
        select(FlowRunRow.id)
        .where(FlowRunRow.state == FlowRunState.SCHEDULED, FlowRunRow.scheduled_start_time <= now, label_match(labels))
        .order_by(FlowRunRow.scheduled_start_time, FlowRunRow.created, FlowRunRow.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=FlowRunRow)
    ids = list(session.scalars(candidates))
    runs: list[FlowRun] = []
    if ids:
        session.execute(
            update(FlowRunRow)
            .where(FlowRunRow.id.in_(ids), FlowRunRow.state == FlowRunState.SCHEDULED)
            .values(
                state=FlowRunState.SUBMITTED,
                state_message=f"claimed by agent {agent.name!r}",
                agent_id=agent_id,
                submitted_at=now,
                updated=now,
                version=FlowRunRow.version + 1,
                attempt=FlowRunRow.attempt + 1,
                claim_id=claim_id,
            ),
            execution_options={"synchronize_session": False},
        )
        runs = read_runs(session, ids)
    session.commit()
    return runs


def next_due(session: Session, labels: list[str]) -> datetime.datetime | None:
    """When the earliest future Scheduled run these labels match becomes due, if any."""
    return session.scalar(
        select(func.min(FlowRunRow.scheduled_start_time)).where(
            FlowRunRow.state == FlowRunState.SCHEDULED, label_match(labels)
        )
    )
