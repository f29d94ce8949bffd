"""Flow-run queries: read, list, state changes, heartbeat, explain.

Route: ``server/api/flow_runs.py``. Creating runs is ``run_creation.py``; the claim is in
``work.py``; the rules for state changes in ``transitions.py``.
"""

from __future__ import annotations

import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, exists, func, select, union_all
from sqlalchemy.orm import Session

from headwater.core.run_states import FINISHED, FlowRunState, parse_state
from headwater.schemas.flow_runs import (
    Explain,
    ExplainAgent,
    FlowRun,
    FlowRunPage,
    SetState,
)
from headwater.server.database.orm import AgentRow, FlowRow, FlowRunLabelRow, FlowRunRow, LogRow, ProjectRow
from headwater.server.errors import Conflict, Invalid
from headwater.server.models.common import get_or_404, utcnow
from headwater.server.models.run_states import record as record_state
from headwater.server.models.transitions import cancel_target, check_transition

FLOW_RUNS = cast(Table, FlowRunRow.__table__)
FLOW_RUN_LABELS = cast(Table, FlowRunLabelRow.__table__)

#: Most ``label`` filters one ``GET /runs`` may give.
MAX_LABEL_FILTERS = 20


def to_schema(row: Any, flow_name: str, project_name: str) -> FlowRun:
    return FlowRun(
        id=row.id,
        flow_id=row.flow_id,
        flow_name=flow_name,
        project_name=project_name,
        run_name=row.run_name,
        state=row.state,
        state_message=row.state_message,
        version=row.version,
        labels=row.labels,
        parameters=row.parameters,
        agent_id=row.agent_id,
        idempotency_key=row.idempotency_key,
        scheduled_start_time=row.scheduled_start_time,
        created=row.created,
        updated=row.updated,
        submitted_at=row.submitted_at,
        start_time=row.start_time,
        end_time=row.end_time,
        heartbeat=row.heartbeat,
        reschedule_count=row.reschedule_count,
        attempt=row.attempt,
    )


def _with_names() -> Select[FlowRunRow, str, str]:
    return (
        select(FlowRunRow, FlowRow.name, ProjectRow.name)
        .join(FlowRow, FlowRow.id == FlowRunRow.flow_id)
        .join(ProjectRow, ProjectRow.id == FlowRow.project_id)
    )


#: Runs by id with their flow's and project's names, as plain rows (no ORM objects to build):
#: built once, it answers every claim.
READ_RUNS = (
    select(FLOW_RUNS, FlowRow.name.label("flow_name"), ProjectRow.name.label("project_name"))
    .join(FlowRow, FlowRow.id == FLOW_RUNS.c.flow_id)
    .join(ProjectRow, ProjectRow.id == FlowRow.project_id)
    .where(FLOW_RUNS.c.id.in_(bindparam("p_ids", expanding=True)))
)


def read_runs(session: Session, ids: list[str]) -> list[FlowRun]:
    """Runs by id, in the order given."""
    rows = session.execute(READ_RUNS, {"p_ids": ids})
    found = {row.id: to_schema(row, row.flow_name, row.project_name) for row in rows}
    return [found[i] for i in ids if i in found]


def get_flow_run(session: Session, flow_run_id: str) -> FlowRun:
    get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    return read_runs(session, [flow_run_id])[0]


def list_flow_runs(
    session: Session,
    *,
    state: list[str] | None = None,
    flow_id: str | None = None,
    flow_name: str | None = None,
    project_name: str | None = None,
    agent_id: str | None = None,
    label: list[str] | None = None,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> FlowRunPage:
    """Runs matching every filter given (each label given must be on the run), newest first.

    ``state`` names are matched in any case (``scheduled`` is ``Scheduled``); an
    unknown one is refused (422) rather than matching nothing. ``total`` counts the
    matching runs up to ``COUNT_AHEAD`` past the page, read in the same walk of an index as
    the page itself (``total_exact`` is false when it stopped there): an exact count of a
    long history reads every matching run, a cost growing with the history.
    """
    try:
        states = sorted({parse_state(name).value for name in state or ()})
    except ValueError as exc:
        raise Invalid(f"GET /runs?state=: {exc}") from None
    labels = sorted(set(label or ()))
    if len(labels) > MAX_LABEL_FILTERS:
        raise Invalid(
            f"GET /runs takes at most {MAX_LABEL_FILTERS} label filters, not {len(labels)}; a run has them all, "
            "so a few of the rarest select as well"
        )
    since, until = _utc_filter("since", since), _utc_filter("until", until)
    flow_ids = _flow_ids(session, flow_id, flow_name, project_name)
    if flow_ids == []:
        return FlowRunPage(flow_runs=[], total=0, offset=offset, limit=limit)
    filters: list[Any] = []
    if agent_id is not None:
        filters.append(FLOW_RUNS.c.agent_id == agent_id)
    # With no state or flow filter the first label's own index is walked (its runs, newest first):
    # a rare label then reads only its runs, not the history. Otherwise the state's or flow's
    # index is walked, each run's labels looked up (a rare state, e.g. Running, stays cheap).
    by_label = bool(labels) and flow_ids is None and not states
    if labels and not by_label:
        filters.append(_has_labels(labels, session.get_bind().dialect.name))
    if since is not None:
        filters.append(FLOW_RUNS.c.created >= since)
    if until is not None:
        filters.append(FLOW_RUNS.c.created < until)
    # The column whose values are walked newest first in an index each ((flow_id|state, created, id)):
    # the flow versions when a flow or project is asked for, else the states.
    if flow_ids is not None:
        walk, values = FLOW_RUNS.c.flow_id, flow_ids
        if states:
            filters.append(FLOW_RUNS.c.state.in_(states))
    else:
        walk, values = FLOW_RUNS.c.state, states
    if by_label:
        ids = _label_page_ids(session, labels, filters, offset, limit + COUNT_AHEAD + 1)
    else:
        ids = _page_ids(session, walk, values, filters, offset, limit + COUNT_AHEAD + 1)  # one more: is there more?
    if ids or not offset:
        total, exact = offset + min(len(ids), limit + COUNT_AHEAD), len(ids) <= limit + COUNT_AHEAD
    else:  # past the end: count where the end is
        if by_label:
            filters.append(_has_labels(labels, session.get_bind().dialect.name))
        matching = select(FLOW_RUNS.c.id).where(*filters)
        if values:
            matching = matching.where(walk.in_(values))
        total, exact = session.scalar(select(func.count()).select_from(matching.limit(offset).subquery())) or 0, True
    return FlowRunPage(
        flow_runs=read_runs(session, ids[:limit]), total=total, total_exact=exact, offset=offset, limit=limit
    )


#: How many matching runs past the page ``GET /runs`` counts for ``total`` (read with the page, in one walk).
COUNT_AHEAD = 100
#: Most values of the walked column read as one index walk each, merged; past it, one ``IN`` and a sort.
MAX_WALKS = 50
#: Newest first; the id orders runs created in the same instant.
NEWEST_FIRST = (FLOW_RUNS.c.created.desc(), FLOW_RUNS.c.id.desc())


def _has_labels(labels: list[str], dialect: str) -> Any:
    """The run carries every one of ``labels``.

    SQLite: one correlated look-up in the labels' primary key per run walked. PostgreSQL: a
    semi-join per label, which its planner drives from the label's own index when the label
    is rare (``ix_flow_run_labels_created``) and from the runs' order when it is common.
    """
    tagged = FLOW_RUN_LABELS.alias("tagged")  # not the outer query's labels, when it walks a label's runs
    if dialect == "postgresql":
        return and_(
            *(exists().where(tagged.c.flow_run_id == FLOW_RUNS.c.id, tagged.c.label == label) for label in labels)
        )
    on_run = select(func.count()).where(tagged.c.flow_run_id == FLOW_RUNS.c.id)
    return on_run.where(tagged.c.label.in_(labels)).scalar_subquery() == len(labels)


def _flow_ids(
    session: Session, flow_id: str | None, flow_name: str | None, project_name: str | None
) -> list[str] | None:
    """The flow versions the flow filters allow (None: no flow filter)."""
    if flow_name is None and project_name is None:
        return None if flow_id is None else [flow_id]
    query = select(FlowRow.id).join(ProjectRow, ProjectRow.id == FlowRow.project_id)
    if flow_id is not None:
        query = query.where(FlowRow.id == flow_id)
    if flow_name is not None:
        query = query.where(FlowRow.name == flow_name)
    if project_name is not None:
        query = query.where(ProjectRow.name == project_name)
    return sorted(session.scalars(query))


def _page_ids(session: Session, walk: Any, values: list[str], filters: list[Any], offset: int, limit: int) -> list[str]:
    """The ids of the page, newest first.

    With several values of the walked column (several states, a flow's versions), each value's
    newest ``offset + limit`` runs are read from its index and merged: an ``IN`` would read
    every matching run and sort them all (a million, in a long history).
    """
    if len(values) <= 1 or len(values) > MAX_WALKS:
        query = select(FLOW_RUNS.c.id).where(*filters)
        if values:
            query = query.where(walk == values[0] if len(values) == 1 else walk.in_(values))
        return list(session.scalars(query.order_by(*NEWEST_FIRST).offset(offset).limit(limit)))
    walks = [
        select(FLOW_RUNS.c.id, FLOW_RUNS.c.created)
        .where(walk == value, *filters)
        .order_by(*NEWEST_FIRST)
        .limit(offset + limit)
        .subquery()
        for value in values
    ]
    merged = union_all(*(select(w.c.id, w.c.created) for w in walks)).subquery()
    return list(
        session.scalars(
            select(merged.c.id).order_by(merged.c.created.desc(), merged.c.id.desc()).offset(offset).limit(limit)
        )
    )


def _label_page_ids(session: Session, labels: list[str], filters: list[Any], offset: int, limit: int) -> list[str]:
    """The ids of the page, newest first, walking the first label's runs in ``ix_flow_run_labels_created``.

    A label row carries its run's ``created`` (migration 0008), so the walk is in the page's
    order and stops at its end; each run found is checked against the other filters and labels.
    """
    first, rest = labels[0], labels[1:]
    runs = FLOW_RUN_LABELS.c.flow_run_id
    query = (
        select(runs)
        .join(FLOW_RUNS, FLOW_RUNS.c.id == runs)
        .where(FLOW_RUN_LABELS.c.label == first, *filters)
        .order_by(FLOW_RUN_LABELS.c.created.desc(), runs.desc())
        .offset(offset)
        .limit(limit)
    )
    if rest:
        query = query.where(_has_labels(rest, session.get_bind().dialect.name))
    return list(session.scalars(query))


def _utc_filter(name: str, value: datetime.datetime | None) -> datetime.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(datetime.UTC)
    except OverflowError:
        raise Invalid(f"{name}={value.isoformat()} is outside the years 1-9999 in UTC") from None


def _move(row: FlowRunRow, state: str, message: str | None, now: datetime.datetime) -> None:
    row.state = state
    row.state_message = message
    row.version += 1
    row.updated = now
    if state == FlowRunState.RUNNING and row.start_time is None:
        row.start_time = now
    if state in FINISHED:
        row.end_time = now


def set_flow_run_state(session: Session, flow_run_id: str, body: SetState) -> FlowRun:
    """Move the run to ``body.state`` if the rules allow it and ``body.version`` is current."""
    row = get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    if body.version is not None and body.version != row.version:
        raise Conflict(
            f"flow run {flow_run_id} is at version {row.version} ({row.state}), not {body.version}: "
            "someone else changed it; read it again"
        )
    check_transition(row.state, body.state)
    now = utcnow()
    record_state(session, row.id, body.state, body.message, now, row.agent_id)
    _move(row, body.state, body.message, now)
    if body.state == FlowRunState.SCHEDULED:  # put back by its agent
        row.agent_id = None
        row.submitted_at = None
    if body.state == FlowRunState.RUNNING:
        row.heartbeat = now
    session.commit()
    return get_flow_run(session, flow_run_id)


def cancel_flow_run(session: Session, flow_run_id: str) -> FlowRun:
    row = get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    target = cancel_target(row.state)
    now = utcnow()
    record_state(session, row.id, target, "cancelled on request", now, row.agent_id)
    _move(row, target, "cancelled on request", now)
    session.commit()
    return get_flow_run(session, flow_run_id)


def heartbeat(session: Session, flow_run_id: str) -> FlowRun:
    """Record that the run's process is alive; the answer tells it its current state.

    Conflict (409) for a finished run: nothing is alive in it any more.
    """
    row = get_or_404(session, FlowRunRow, flow_run_id, "flow run")
    if row.state in FINISHED:
        raise Conflict(
            f"flow run {flow_run_id} is {row.state} ({row.state_message or 'no message'}): a finished run takes no "
            "heartbeats; its process should stop"
        )
    row.heartbeat = utcnow()
    session.commit()
    return get_flow_run(session, flow_run_id)


def can_take(run_labels: list[str], agent_labels: list[str]) -> tuple[bool, list[str], str]:
    """The label rule: L ⊆ A, and L = ∅ only when A = ∅. Returns (ok, missing, reason)."""
    missing = sorted(set(run_labels) - set(agent_labels))
    if missing:
        return False, missing, f"the agent lacks label(s) {', '.join(missing)}"
    if not run_labels and agent_labels:
        return (
            False,
            [],
            (
                "the run has no labels, and an agent with labels only takes labelled runs; "
                "give the run a label this agent has, or start an agent without labels"
            ),
        )
    return True, [], "can take it"


def explain(session: Session, flow_run_id: str, seen_within: float) -> Explain:
    """Which recently seen agents could take this run, and why the others can't."""
    run = get_flow_run(session, flow_run_id)
    since = utcnow() - datetime.timedelta(seconds=seen_within)
    agents = session.scalars(select(AgentRow).where(AgentRow.last_seen >= since).order_by(AgentRow.name)).all()
    verdicts = []
    for agent in agents:
        ok, missing, reason = can_take(run.labels, agent.labels)
        verdicts.append(
            ExplainAgent(
                id=agent.id,
                name=agent.name,
                kind=agent.kind,
                labels=agent.labels,
                last_seen=agent.last_seen,
                can_run=ok,
                missing_labels=missing,
                reason=reason,
            )
        )
    matched = any(v.can_run for v in verdicts)
    if not agents:
        message = f"no agent has been seen in the last {seen_within:.0f}s; start one whose labels include the run's"
    elif matched:
        message = f"{sum(v.can_run for v in verdicts)} live agent(s) can take this run"
    else:
        message = "no live agent can take this run: " + "; ".join(f"{v.name}: {v.reason}" for v in verdicts)
    if run.state != FlowRunState.SCHEDULED:
        message = f"the run is {run.state} (only Scheduled runs are claimed). " + message
    return Explain(
        flow_run_id=run.id, state=run.state, labels=run.labels, matched=matched, message=message, agents=verdicts
    )


def add_log(session: Session, flow_run_id: str, level: str, message: str, name: str) -> None:
    """A log line from the server itself (recovery), in the run's log."""
    session.add(LogRow(flow_run_id=flow_run_id, timestamp=utcnow(), level=level, name=name, message=message))
