"""The state history of flow runs: a row per state a run entered, and reading it back.

Every place that changes a run's state records it here in the same transaction
(``flow_runs.py``: creation, proposals, cancel; ``work.py``: the claim;
``services/recovery.py``: reschedule and fail). Route: ``GET /runs/{id}/states`` in ``server/api/flow_runs.py``.
"""

from __future__ import annotations

import datetime
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from headwater.core.run_states import FlowRunState
from headwater.schemas.flow_runs import FlowRunStateEntry
from headwater.server.database.orm import AgentRow, FlowRunRow, FlowRunStateRow
from headwater.server.models.common import get_or_404

STATES = cast(Table, FlowRunStateRow.__table__)
#: Built once: run creation is a hot path (``bench/api.py``), and this is its one extra statement.
INSERT_STATE = insert(STATES)


def record(
    session: Session,
    flow_run_id: str,
    state: str,
    message: str | None,
    timestamp: datetime.datetime,
    agent_id: str | None = None,
) -> None:
    """Add the row for a state change; the caller commits it with the change itself."""
    session.execute(
        INSERT_STATE,
        {"flow_run_id": flow_run_id, "state": state, "message": message, "timestamp": timestamp, "agent_id": agent_id},
    )


def list_states(session: Session, flow_run_id: str) -> list[FlowRunStateEntry]:
    """The run's states, oldest first.

    The claim (``models/work.py``) records its Submitted row with the take; a run claimed
    before it did (a database from before migration 0006's version) has none: while such a
    run is under a claim with no row at its ``submitted_at``, that entry is made from the
    run's ``submitted_at`` and ``agent_id``.
    """
    run = get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    rows = session.execute(
        select(STATES.c.state, STATES.c.message, STATES.c.timestamp, STATES.c.agent_id)
        .where(STATES.c.flow_run_id == flow_run_id)
        .order_by(STATES.c.timestamp, STATES.c.id)
    ).all()
    entries = [
        FlowRunStateEntry(state=r.state, message=r.message, timestamp=r.timestamp, agent_id=r.agent_id) for r in rows
    ]
    submitted = run.submitted_at
    if submitted is not None and not any(
        e.state == FlowRunState.SUBMITTED and e.timestamp == submitted for e in entries
    ):
        claimed = FlowRunStateEntry(
            state=FlowRunState.SUBMITTED,
            message=_claim_message(session, run.agent_id),
            timestamp=submitted,
            agent_id=run.agent_id,
        )
        # after every entry up to its time: a state recorded in the same instant came before the claim
        at = next((i for i, e in enumerate(entries) if e.timestamp > submitted), len(entries))
        entries.insert(at, claimed)
    return entries


def _claim_message(session: Session, agent_id: str | None) -> str | None:
    """The message a claim writes (``models/work.py``), for the entry made from ``submitted_at``."""
    agent = session.get(AgentRow, agent_id) if agent_id is not None else None
    return f"claimed by agent {agent.name!r}" if agent is not None else None
