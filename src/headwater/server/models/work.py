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
import math
import time
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Connection,
    Integer,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    column,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from headwater.core.run_states import FlowRunState
from headwater.schemas.flow_runs import FlowRun
from headwater.server.database.orm import AgentRow, FlowRow, FlowRunLabelRow, FlowRunRow, ProjectRow
from headwater.server.errors import ApiError, Forbidden, NotFound
from headwater.server.identity import Caller
from headwater.server.models.common import utcnow
from headwater.server.models.flow_runs import READ_RUNS, to_schema
from headwater.server.models.run_states import INSERT_STATE, STATES

# The claim's statements are built once and take their values as parameters: building and
# keying them again on every claim cost about as much as running them (``bench/api.py``,
# ``single_claims``), and they are executed as Core, past the ORM's unit of work. A batch of
# claims (``services/claims.py``) runs a fixed number of statements, however many claims it has.
_RUNS = cast(Table, FlowRunRow.__table__)
_AGENTS = cast(Table, AgentRow.__table__)
_FLOWS = cast(Table, FlowRow.__table__)
_PROJECTS = cast(Table, ProjectRow.__table__)
_AGENTS_OF: dict[str, Any] = {}
_NEXT_DUE: dict[bool, Any] = {}


def _agents_of(dialect: str) -> Any:
    """The claiming agents (``p_ids``), each with the runs a claim of the batch sent again
    (``p_claims``) took the first time, still Submitted to it (one row per such run; the run
    columns are NULL for an agent without): a retry's answer costs no statement of its own.

    On PostgreSQL the ids are one array parameter (``= ANY``), so the statement's text is the
    same for every batch and the driver prepares it once.
    """
    statement = _AGENTS_OF.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            agent_in = _AGENTS.c.id == any_(bindparam("p_ids", type_=ARRAY(String)))
            claim_in = _RUNS.c.claim_id == any_(bindparam("p_claims", type_=ARRAY(String)))
        else:
            agent_in = _AGENTS.c.id.in_(bindparam("p_ids", expanding=True))
            claim_in = _RUNS.c.claim_id.in_(bindparam("p_claims", expanding=True))
        statement = _AGENTS_OF[dialect] = (
            select(
                _AGENTS.c.id,
                _AGENTS.c.name,
                _AGENTS.c.owner,
                _AGENTS.c.labels,
                _RUNS.c.id.label("again_run"),
                _RUNS.c.claim_id.label("again_claim"),
            )
            .outerjoin(
                _RUNS,
                and_(_RUNS.c.agent_id == _AGENTS.c.id, claim_in, _RUNS.c.state == FlowRunState.SUBMITTED),
            )
            .where(agent_in)
            .order_by(_RUNS.c.scheduled_start_time, _RUNS.c.created, _RUNS.c.id)
        )
    return statement


_SEEN = update(_AGENTS).where(_AGENTS.c.id == bindparam("p_agent")).values(last_seen=bindparam("p_now"))
_RELABEL = (
    update(_AGENTS)
    .where(_AGENTS.c.id == bindparam("p_agent"))
    .values(labels=bindparam("p_labels", type_=_AGENTS.c.labels.type), last_seen=bindparam("p_now"))
)
#: One run to one claim (run in one call for all runs of a batch); parameters are named apart
#: from columns: an UPDATE sets every column a parameter names.
_TAKE = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("p_run"), _RUNS.c.state == FlowRunState.SCHEDULED)
    .values(
        state=FlowRunState.SUBMITTED,
        state_message=bindparam("p_message"),
        agent_id=bindparam("p_agent"),
        submitted_at=bindparam("p_now"),
        updated=bindparam("p_now"),
        version=_RUNS.c.version + 1,
        attempt=_RUNS.c.attempt + 1,
        claim_id=bindparam("p_claim"),
    )
)
_CANDIDATES: dict[bool, Any] = {}
#: Seconds between writes of an agent's ``last_seen`` by its claims (``SeenWrites``).
SEEN_EVERY = 1.0


def _match(labelled: bool) -> Any:
    """The SQL condition "a run an agent with the labels ``p_labels`` may take" (L ⊆ A, L = ∅ only when A = ∅)."""
    run_label = FlowRunLabelRow.flow_run_id == FlowRunRow.id
    has_labels = exists().where(run_label)
    if not labelled:
        return ~has_labels
    outside = exists().where(run_label, FlowRunLabelRow.label.not_in(bindparam("p_labels", expanding=True)))
    return and_(has_labels, ~outside)


def _candidates(labelled: bool) -> Any:
    """The due, matching Scheduled runs, oldest due first; parameters ``p_now``, ``p_limit`` (and ``p_labels``)."""
    statement = _CANDIDATES.get(labelled)
    if statement is None:
        statement = _CANDIDATES[labelled] = (
            select(FlowRunRow.id)
            .where(
                FlowRunRow.state == FlowRunState.SCHEDULED,
                FlowRunRow.scheduled_start_time <= bindparam("p_now"),
                _match(labelled),
            )
            .order_by(FlowRunRow.scheduled_start_time, FlowRunRow.created, FlowRunRow.id)
            .limit(bindparam("p_limit"))
        )
    return statement


@dataclass(frozen=True)
class ClaimAsk:
    """One claim request: who asks, for which agent, with which labels, how many runs.

    ``look=False`` skips the search for due runs (the server knows its label set has none:
    ``services/waiter.py``); everything else of a claim still holds — its agent is checked
    (404, 403), a retried ``claim_id`` answers what it took, ``last_seen`` is written.
    """

    caller: Caller
    agent_id: str
    labels: list[str]
    limit: int
    claim_id: str | None = None
    look: bool = True


@dataclass
class ClaimTaken:
    """What one claim took, as rows read inside its transaction (``answer`` builds the wire schema after it)."""

    rows: list[Any] = field(default_factory=list)
    due: datetime.datetime | None = None

    def answer(self) -> list[FlowRun]:
        runs = [to_schema(row, row.flow_name, row.project_name) for row in self.rows]
        runs.sort(key=lambda run: (run.scheduled_start_time, run.created, run.id))
        return runs


def claim_batch(
    connection: Connection, asks: list[ClaimAsk], seen: SeenWrites | None = None
) -> list[ClaimTaken | ApiError]:
    """Make several claims in the caller's transaction, in order; one answer (or refusal) per ask.

    Each claim moves up to ``limit`` due, matching Scheduled runs to Submitted for its agent,
    oldest due first (earlier asks of the batch get the older runs), and gives each the next
    ``attempt`` (its claim number, the fence of every later write). With ``claim_id``, a claim
    sent again (a retry of one whose answer was lost) answers the runs the first one took,
    still Submitted to this agent, and takes no others. The runs are read before the commit,
    so a claim that commits has its answer. An ask for an unknown agent is NotFound; one an
    agent token may not make is Forbidden (nothing is written for either). A claim that takes
    nothing also tells when the next run its labels match is due. With ``seen``, an agent's
    ``last_seen`` is written only as often as it allows.
    """
    now = utcnow()
    claim_ids = sorted({ask.claim_id for ask in asks if ask.claim_id is not None})
    agents: dict[str, Any] = {}
    before: dict[tuple[str, str], list[str]] = {}  # (agent, claim id) → the runs that claim took
    for row in connection.execute(
        _agents_of(connection.dialect.name), {"p_ids": sorted({a.agent_id for a in asks}), "p_claims": claim_ids}
    ):
        agents[row.id] = row
        if row.again_run is not None:
            before.setdefault((row.id, row.again_claim), []).append(row.again_run)
    answers: list[ClaimTaken | ApiError] = []
    for ask in asks:
        refusal = _refusal(ask, agents.get(ask.agent_id))
        answers.append(refusal if refusal is not None else ClaimTaken())
    allowed = [(ask, answer) for ask, answer in zip(asks, answers, strict=True) if isinstance(answer, ClaimTaken)]
    if not allowed:
        return answers
    taken: dict[int, list[str]] = {}  # run ids, per ask (by position in allowed)
    fresh = _replayed(allowed, before, taken)
    _note_agents(connection, [ask for ask, _ in allowed], agents, now, seen)
    groups: dict[tuple[str, ...], list[int]] = {}
    for position, (ask, _) in enumerate(allowed):
        if position in fresh and ask.look:
            groups.setdefault(tuple(ask.labels), []).append(position)
    shares = {p: (allowed[p][0], agents[allowed[p][0].agent_id].name) for ps in groups.values() for p in ps}
    rows: dict[str, Any] = {}
    for labels, positions in groups.items():
        take = _take_postgres if connection.dialect.name == "postgresql" else _take_sqlite
        for position, got in take(connection, list(labels), [(p, *shares[p]) for p in positions], now).items():
            taken[position] = [row if isinstance(row, str) else row.id for row in got]
            rows.update((row.id, row) for row in got if not isinstance(row, str))
    unread = [run_id for ids in taken.values() for run_id in ids if run_id not in rows]
    if unread:
        rows.update((row.id, row) for row in connection.execute(READ_RUNS, {"p_ids": unread}))
    dues: dict[tuple[str, ...], datetime.datetime | None] = {}
    for position, (ask, answer) in enumerate(allowed):
        answer.rows = [rows[run_id] for run_id in taken.get(position, []) if run_id in rows]
        if not answer.rows and ask.look:
            key = tuple(ask.labels)
            if key not in dues:
                dues[key] = next_due(connection, ask.labels)
            answer.due = dues[key]
    return answers


#: (position in the batch, the ask, its agent's name)
_Share = tuple[int, ClaimAsk, str]


def _take_sqlite(
    connection: Connection, labels: list[str], shares: list[_Share], now: datetime.datetime
) -> dict[int, list[Any]]:
    """The run ids each of these claims (same labels) takes: the candidates in one read, the takes in one call."""
    params: dict[str, Any] = {"p_now": now, "p_limit": sum(ask.limit for _, ask, _ in shares)}
    if labels:
        params["p_labels"] = labels
    due = list(connection.execute(_candidates(bool(labels)), params).scalars())
    taken: dict[int, list[Any]] = {}
    takes: list[dict[str, Any]] = []
    for position, ask, agent_name in shares:
        mine, due = due[: ask.limit], due[ask.limit :]
        taken[position] = mine
        message = f"claimed by agent {agent_name!r}"
        takes += [{"p_run": run_id, "p_agent": ask.agent_id, "p_claim": ask.claim_id, "p_now": now,
                   "p_message": message} for run_id in mine]  # fmt: skip
    if takes:
        connection.execute(_TAKE, takes)
        connection.execute(INSERT_STATE, [{"flow_run_id": t["p_run"], "state": FlowRunState.SUBMITTED,
                                           "message": t["p_message"], "timestamp": now, "agent_id": t["p_agent"]}
                                          for t in takes])  # fmt: skip
    return taken


def _take_postgres(
    connection: Connection, labels: list[str], shares: list[_Share], now: datetime.datetime
) -> dict[int, list[Any]]:
    """The rows each of these claims (same labels) takes, in one statement (``_claim_statement``)."""
    params: dict[str, Any] = {"p_now": now, "p_limit": 0, "p_los": [], "p_his": [], "p_agents": [],
                              "p_claims": [], "p_messages": []}  # fmt: skip
    owner: list[int] = []  # position of the claim taking the n-th candidate
    for position, ask, agent_name in shares:
        params["p_los"].append(params["p_limit"] + 1)
        params["p_limit"] += ask.limit
        params["p_his"].append(params["p_limit"])
        params["p_agents"].append(ask.agent_id)
        params["p_claims"].append(ask.claim_id)
        params["p_messages"].append(f"claimed by agent {agent_name!r}")
        owner += [position] * ask.limit
    if labels:
        params["p_labels"] = labels
    taken: dict[int, list[Any]] = {position: [] for position, _, _ in shares}
    for row in connection.execute(_claim_statement(bool(labels)), params):
        taken[owner[row.n - 1]].append(row)
    return taken


_CLAIM_STATEMENTS: dict[bool, Any] = {}


def _claim_statement(labelled: bool) -> Any:
    """PostgreSQL: the claims of one label set, in one statement and one round trip.

    ``due`` locks the candidates (``FOR UPDATE SKIP LOCKED``: concurrent claimers on other
    server processes skip them) in a MATERIALIZED CTE, which the planner runs once (as ``id IN
    (SELECT … FOR UPDATE SKIP LOCKED)`` it may rescan the subquery per outer row, each rescan
    locking the next row); ``ranked`` numbers them oldest first; ``shares`` gives each claim its
    range of numbers (``p_los``..``p_his``) with its agent, claim id and message; the UPDATE
    takes them and returns each run with its flow's and project's names and its number.
    """
    statement = _CLAIM_STATEMENTS.get(labelled)
    if statement is None:
        due = (
            _candidates(labelled)
            .with_only_columns(_RUNS.c.id, _RUNS.c.scheduled_start_time, _RUNS.c.created)
            .with_for_update(skip_locked=True, of=FlowRunRow)
            .cte("due")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        order = (due.c.scheduled_start_time, due.c.created, due.c.id)
        ranked = select(due.c.id, func.row_number().over(order_by=order).label("n")).cte("ranked")
        shares = func.unnest(
            bindparam("p_los", type_=ARRAY(Integer)),
            bindparam("p_his", type_=ARRAY(Integer)),
            bindparam("p_agents", type_=ARRAY(String)),
            bindparam("p_claims", type_=ARRAY(String)),
            bindparam("p_messages", type_=ARRAY(Text)),
        ).table_valued(
            column("lo", Integer), column("hi", Integer), column("agent", String), column("claim", String),
            column("message", Text), name="shares",
        ).render_derived()  # fmt: skip
        taken = (
            update(_RUNS)
            .where(
                _RUNS.c.id == ranked.c.id,
                ranked.c.n.between(shares.c.lo, shares.c.hi),
                _RUNS.c.state == FlowRunState.SCHEDULED,
                _FLOWS.c.id == _RUNS.c.flow_id,
                _PROJECTS.c.id == _FLOWS.c.project_id,
            )
            .values(
                state=FlowRunState.SUBMITTED,
                state_message=shares.c.message,
                agent_id=shares.c.agent,
                submitted_at=bindparam("p_now"),
                updated=bindparam("p_now"),
                version=_RUNS.c.version + 1,
                attempt=_RUNS.c.attempt + 1,
                claim_id=shares.c.claim,
            )
            .returning(*_RUNS.c, _FLOWS.c.name.label("flow_name"), _PROJECTS.c.name.label("project_name"), ranked.c.n)
            .cte("taken")
        )
        noted = (
            insert(STATES)
            .from_select(
                ["flow_run_id", "state", "message", "timestamp", "agent_id"],
                select(taken.c.id, taken.c.state, taken.c.state_message, taken.c.submitted_at, taken.c.agent_id),
            )
            .cte("noted")
        )
        statement = _CLAIM_STATEMENTS[labelled] = select(taken).add_cte(noted)
    return statement


def _refusal(ask: ClaimAsk, agent: Any) -> ApiError | None:
    if agent is None:
        return NotFound(f"agent {ask.agent_id!r} not found")
    if ask.caller.is_agent and agent.owner != ask.caller.identity:
        return Forbidden(
            f"agent {agent.name!r} (id {ask.agent_id}) belongs to another token; an agent token acts only for the "
            "agents registered with it (or with a token of its pool): use that agent's token"
        )
    if ask.caller.is_agent and sorted(agent.labels) != ask.labels:
        return Forbidden(
            f"agent {agent.name!r} registered with labels {sorted(agent.labels)} and can't claim with "
            f"{ask.labels}: an agent token claims only for the labels its agent registered with; "
            "register the agent again with the new labels"
        )
    return None


class SeenWrites:
    """When this process last wrote each agent's ``last_seen`` on a claim: at most every ``every`` seconds.

    An agent long-polling claims again and again; writing ``last_seen`` on each claim was one
    statement per batch for a time nobody reads closer than a second (``headwater get agents``,
    ``explain``).
    """

    def __init__(self, every: float = SEEN_EVERY) -> None:
        self.every = every
        self._written: dict[str, float] = {}

    def due(self, agent_ids: set[str]) -> list[str]:
        """The agents among these whose ``last_seen`` is to be written now (noted as written)."""
        now = time.monotonic()
        if len(self._written) > 10_000:  # forget agents not seen for a while
            self._written = {a: t for a, t in self._written.items() if now - t < self.every}
        due = sorted(a for a in agent_ids if now - self._written.get(a, -math.inf) >= self.every)
        for agent_id in due:
            self._written[agent_id] = now
        return due


def _note_agents(
    connection: Connection,
    asks: list[ClaimAsk],
    agents: dict[str, Any],
    now: datetime.datetime,
    seen: SeenWrites | None,
) -> None:
    """Each claiming agent was seen now; one that claims with new labels keeps them (explain judges by them)."""
    labels_now = {agent_id: list(row.labels) for agent_id, row in agents.items()}
    unchanged: set[str] = set()
    for ask in asks:
        if labels_now[ask.agent_id] != ask.labels:
            connection.execute(_RELABEL, {"p_agent": ask.agent_id, "p_labels": list(ask.labels), "p_now": now})
            labels_now[ask.agent_id] = list(ask.labels)
        else:
            unchanged.add(ask.agent_id)
    write = sorted(unchanged) if seen is None else seen.due(unchanged)
    if write:
        connection.execute(_SEEN, [{"p_agent": agent_id, "p_now": now} for agent_id in write])


def _replayed(
    allowed: list[tuple[ClaimAsk, ClaimTaken]], before: dict[tuple[str, str], list[str]], taken: dict[int, list[str]]
) -> set[int]:
    """Fill ``taken`` for the asks that repeat a claim which took runs; the positions of the others."""
    fresh = set(range(len(allowed)))
    for position, (ask, _) in enumerate(allowed):
        again = before.get((ask.agent_id, ask.claim_id or ""))
        if again:
            taken[position] = again
            fresh.discard(position)
    return fresh


def next_due(connection: Connection | Session, labels: list[str]) -> datetime.datetime | None:
    """When the earliest future Scheduled run these labels match becomes due, if any."""
    labelled = bool(labels)
    statement = _NEXT_DUE.get(labelled)
    if statement is None:  # built once, as the candidates are: a search that found nothing runs it
        statement = _NEXT_DUE[labelled] = select(func.min(FlowRunRow.scheduled_start_time)).where(
            FlowRunRow.state == FlowRunState.SCHEDULED, _match(labelled)
        )
    return connection.scalar(statement, {"p_labels": labels} if labelled else {})
