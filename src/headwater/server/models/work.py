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
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, select, update
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


# The claim's statements are built once and take their values as parameters: building and
# keying them again on every claim cost about as much as running them (``bench/api.py``,
# ``single_claims``), and they are executed as Core, past the ORM's unit of work.
_RUNS = cast(Table, FlowRunRow.__table__)
_AGENTS = cast(Table, AgentRow.__table__)
_SEEN = update(_AGENTS).where(_AGENTS.c.id == bindparam("p_agent")).values(last_seen=bindparam("p_now"))
_TAKE_VALUES: dict[str, Any] = dict(
    state=FlowRunState.SUBMITTED,
    state_message=bindparam("p_message"),
    agent_id=bindparam("p_agent"),
    submitted_at=bindparam("p_now"),
    updated=bindparam("p_now"),
    version=_RUNS.c.version + 1,
    attempt=_RUNS.c.attempt + 1,
    claim_id=bindparam("p_claim"),
)
_TAKE = (
    update(_RUNS)
    .where(_RUNS.c.id.in_(bindparam("p_ids", expanding=True)), _RUNS.c.state == FlowRunState.SCHEDULED)
    .values(**_TAKE_VALUES)
)
#: The runs a claim sent again (same ``claim_id``) took the first time, still Submitted to its agent.
_REPLAY = (
    select(_RUNS.c.id)
    .where(
        _RUNS.c.agent_id == bindparam("p_agent"),
        _RUNS.c.claim_id == bindparam("p_claim"),
        _RUNS.c.state == FlowRunState.SUBMITTED,
    )
    .order_by(_RUNS.c.scheduled_start_time, _RUNS.c.created, _RUNS.c.id)
)
_CANDIDATES: dict[tuple[str, bool], Any] = {}


def _candidates(dialect: str, labelled: bool) -> Any:
    """The due, matching Scheduled runs, oldest due first; parameters ``p_now``, ``p_limit`` (and ``p_labels``).

    On PostgreSQL, one statement that also takes them (``WITH due AS MATERIALIZED (SELECT … FOR
    UPDATE SKIP LOCKED) UPDATE … FROM due … RETURNING id``), a round trip fewer; parameters of
    ``_TAKE`` too.
    """
    statement = _CANDIDATES.get((dialect, labelled))
    if statement is None:
        run_label = FlowRunLabelRow.flow_run_id == FlowRunRow.id
        has_labels = exists().where(run_label)
        if labelled:
            outside = exists().where(run_label, FlowRunLabelRow.label.not_in(bindparam("p_labels", expanding=True)))
            match = and_(has_labels, ~outside)
        else:
            match = ~has_labels
        statement = (
            select(FlowRunRow.id)
            .where(
                FlowRunRow.state == FlowRunState.SCHEDULED, FlowRunRow.scheduled_start_time <= bindparam("p_now"), match
            )
            .order_by(FlowRunRow.scheduled_start_time, FlowRunRow.created, FlowRunRow.id)
            .limit(bindparam("p_limit"))
        )
        if dialect == "postgresql":
            # A MATERIALIZED CTE locks its rows once. As ``id IN (SELECT … LIMIT n FOR UPDATE SKIP
            # LOCKED)`` the planner may rescan the subquery for every outer row (a nested-loop
            # semi-join), and each rescan locks the next row: one claim of 1 took every due run.
            due = (
                statement.with_for_update(skip_locked=True, of=FlowRunRow)
                .cte("due")
                .prefix_with("MATERIALIZED", dialect="postgresql")
            )
            statement = (
                update(_RUNS)
                .where(_RUNS.c.id == due.c.id, _RUNS.c.state == FlowRunState.SCHEDULED)
                .values(**_TAKE_VALUES)
                .returning(_RUNS.c.id)
            )
        _CANDIDATES[(dialect, labelled)] = statement
    return statement


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
    connection = session.connection()
    if agent.labels != labels:  # explain judges by the labels the agent last claimed with
        agent.labels = list(labels)
        agent.last_seen = now
    else:
        connection.execute(_SEEN, {"p_agent": agent_id, "p_now": now})
    if claim_id is not None:
        taken = list(connection.execute(_REPLAY, {"p_agent": agent_id, "p_claim": claim_id}).scalars())
        if taken:
            again = read_runs(session, taken)
            session.commit()
            return again
    session.flush()  # the agent's labels, if they changed, before the runs' statements
    dialect = connection.dialect.name
    # (parameters are named apart from columns: an UPDATE sets every column a parameter names)
    params: dict[str, Any] = {"p_now": now, "p_limit": limit, "p_agent": agent_id, "p_claim": claim_id,
                              "p_message": f"claimed by agent {agent.name!r}"}  # fmt: skip
    if labels:
        params["p_labels"] = list(labels)
    ids = list(connection.execute(_candidates(dialect, bool(labels)), params).scalars())
    runs: list[FlowRun] = []
    if ids:
        if dialect != "postgresql":  # there the candidates' statement took them already
            connection.execute(_TAKE, {**params, "p_ids": ids})
        runs = read_runs(session, ids)
        runs.sort(key=lambda run: (run.scheduled_start_time, run.created, run.id))
    session.commit()
    return runs


def next_due(session: Session, labels: list[str]) -> datetime.datetime | None:
    """When the earliest future Scheduled run these labels match becomes due, if any."""
    return session.scalar(
        select(func.min(FlowRunRow.scheduled_start_time)).where(
            FlowRunRow.state == FlowRunState.SCHEDULED, label_match(labels)
        )
    )
