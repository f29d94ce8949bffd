"""Who is calling, and what they may write: token identities, agent ownership, claims (fencing).

Every request with a token gets a :class:`Caller` (``deps.py`` makes it). An
*operator* (a user or admin token, or anyone when auth is off) may write any run.
An *agent token* acts only for the agents of its identity:

- a token bound to an agent (``tokens.agent``) is the identity ``agent:<name>`` and may
  register only that agent name;
- a token of a named pool (``tokens.pool``) is ``pool:<name>``: every token of the pool
  acts for every agent of the pool;
- any other agent token is an identity of its own, ``token:<id>`` (agents sharing one
  token are its pool).

The agent's ``owner`` column holds the identity that registered it; a run belongs to the
agent whose id it carries. A write concerning a run — its state, heartbeat, task runs,
logs — may also carry the claim it acts under (the ``Headwater-Claim`` header,
``<agent id>:<attempt>``); every claim of a run adds one to its ``attempt``, so a write
under an older claim, or under a claim recovery took away, is refused with 409 and the
``Headwater-Error: claim-superseded`` header, which a flow-run process obeys by stopping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from headwater.server.database.orm import AgentRow, FlowRunRow
from headwater.server.errors import Conflict, Forbidden, Invalid
from headwater.server.models.common import get_row

#: The request header carrying the claim a write acts under.
CLAIM_HEADER = "headwater-claim"
#: The answer header marking a 409 for a superseded claim (the client turns it into ClaimSupersededError).
ERROR_HEADER = "Headwater-Error"
SUPERSEDED = "claim-superseded"


class ClaimSuperseded(Conflict):
    """A write under a claim that is no longer the run's: the writer must stop working on the run."""

    headers: ClassVar[dict[str, str]] = {ERROR_HEADER: SUPERSEDED}


@dataclass(frozen=True)
class Caller:
    """The caller of one request.

    Attributes:
        scope: the token's scope, or None when auth is off (then the caller is an operator).
        identity: an agent token's identity (``agent:NAME``, ``pool:NAME``, ``token:ID``); None otherwise.
        bound_agent: the one agent name an agent-bound token may register, or None.
        token_id: the token's id, or None.
    """

    scope: str | None
    identity: str | None = None
    bound_agent: str | None = None
    token_id: str | None = None

    @property
    def is_agent(self) -> bool:
        """An agent token: its writes are checked against ownership."""
        return self.scope == "agent"


OPERATOR = Caller(scope=None)


def caller_of(request: Request) -> Caller:
    """The caller ``deps.require`` found for this request (an operator when auth is off)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller if caller is not None else OPERATOR


def token_identity(token_id: str, agent: str | None, pool: str | None) -> str:
    """The identity an agent token acts as (see the module's docstring)."""
    if pool:
        return f"pool:{pool}"
    if agent:
        return f"agent:{agent}"
    return f"token:{token_id}"


def parse_claim(request: Request) -> tuple[str, int] | None:
    """The ``Headwater-Claim`` header as (agent id, attempt), None when absent; Invalid when malformed."""
    raw = request.headers.get(CLAIM_HEADER)
    if raw is None:
        return None
    agent_id, sep, attempt = raw.strip().rpartition(":")
    if not sep or not agent_id or len(agent_id) > 36 or not attempt.isdigit() or len(attempt) > 9:
        raise Invalid(
            f"the Headwater-Claim header must be '<agent id>:<attempt>' (as the agent's claim answered), "
            f"not {raw[:80]!r}"
        )
    return agent_id, int(attempt)


def check_agent(session: Session, caller: Caller, agent_id: str) -> AgentRow | None:
    """The agent row, after checking an agent token may act for it (Forbidden otherwise).

    Returns None when the agent does not exist (the caller decides whether that is a 404).
    """
    row = get_row(session, AgentRow, agent_id)
    if row is not None and caller.is_agent and row.owner != caller.identity:
        raise Forbidden(
            f"agent {row.name!r} (id {agent_id}) belongs to another token; an agent token acts only for the "
            "agents registered with it (or with a token of its pool): use that agent's token"
        )
    return row


def check_run_write(session: Session, caller: Caller, run: FlowRunRow, claim: tuple[str, int] | None) -> None:
    """Refuse a write concerning ``run`` that the caller may not make.

    With a claim: the run must still be under it (ClaimSuperseded otherwise). An agent
    token must hold the run through one of its agents, with or without a claim.
    """
    if claim is not None:
        agent_id, attempt = claim
        if run.agent_id != agent_id or run.attempt != attempt:
            now = f"under claim {run.agent_id}:{run.attempt}" if run.agent_id else "not held by any agent"
            raise ClaimSuperseded(
                f"flow run {run.id} is {run.state} and {now}; this writer's claim {agent_id}:{attempt} was "
                "superseded (the run was taken from it, e.g. rescheduled after its heartbeats stopped): stop "
                "working on this run"
            )
    if not caller.is_agent:
        return
    if run.agent_id is None:
        raise Forbidden(
            f"flow run {run.id} is {run.state} and held by no agent; an agent token writes only runs its agents "
            "claimed"
        )
    owner = session.scalar(select(AgentRow.owner).where(AgentRow.id == run.agent_id))
    if owner != caller.identity:
        raise Forbidden(
            f"flow run {run.id} is held by agent {run.agent_id}, which belongs to another token; an agent token "
            "writes only runs its own agents claimed"
        )


def guard_run_write(session: Session, request: Request, flow_run_id: str) -> None:
    """Check the caller may write run ``flow_run_id`` under the claim it sent (a missing run is the model's 404)."""
    claim = parse_claim(request)
    caller = caller_of(request)
    if claim is None and not caller.is_agent:
        return
    run = get_row(session, FlowRunRow, flow_run_id)
    if run is not None:
        check_run_write(session, caller, run, claim)
