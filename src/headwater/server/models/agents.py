"""Agent queries: register (by name and kind), heartbeat, list. Route: ``server/api/agents.py``."""

from __future__ import annotations

import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headwater.schemas.agents import Agent, AgentRegister
from headwater.server.database.orm import AgentRow
from headwater.server.errors import Conflict
from headwater.server.models.common import get_or_404, new_id, utcnow


def _agent(row: AgentRow, live: bool = True) -> Agent:
    return Agent(
        id=row.id,
        name=row.name,
        kind=row.kind,
        labels=row.labels,
        created=row.created,
        last_seen=row.last_seen,
        live=live,
    )


def register_agent(session: Session, body: AgentRegister) -> Agent:
    """The agent of this name and kind (created, or updated with these labels).

    Idempotent under concurrency: when another request creates the same agent
    between the lookup and the insert, the unique (name, kind) key refuses the
    insert, and the agent it made is updated instead.
    """
    for _ in range(3):
        now = utcnow()
        row = session.scalar(select(AgentRow).where(AgentRow.name == body.name, AgentRow.kind == body.kind))
        if row is None:
            row = AgentRow(
                id=new_id(), name=body.name, kind=body.kind, labels=body.labels, created=now, last_seen=now
            )
            session.add(row)
        else:
            row.labels = body.labels
            row.last_seen = now
        try:
            session.commit()
        except IntegrityError:  # created by a concurrent registration: read it and update it
            session.rollback()
            continue
        return _agent(row)
    raise Conflict(f"agent {body.name!r} ({body.kind}) kept being registered by others at the same moment; try again")


def agent_heartbeat(session: Session, agent_id: str) -> Agent:
    row = get_or_404(session, AgentRow, agent_id, "agent")
    row.last_seen = utcnow()
    session.commit()
    return _agent(row)


def list_agents(session: Session, seen_within: float | None = None) -> list[Agent]:
    """Every agent, last seen first; ``live`` when seen in the last ``seen_within`` seconds (None: all are)."""
    since = utcnow() - datetime.timedelta(seconds=seen_within) if seen_within is not None else None
    rows = session.scalars(select(AgentRow).order_by(AgentRow.last_seen.desc()))
    return [_agent(r, since is None or r.last_seen >= since) for r in rows]
