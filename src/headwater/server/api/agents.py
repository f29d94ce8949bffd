from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select, update

from headwater.schemas.agents import Agent, AgentRegister
from headwater.server.database.orm import AgentRow
from headwater.server.deps import AGENT, db
from headwater.server.errors import Forbidden
from headwater.server.identity import caller_of, check_agent
from headwater.server.models import agents
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/agents", tags=["agents"], route_class=CheckedRoute)


@router.post("", response_model=Agent, dependencies=[AGENT])
def register_agent(body: AgentRegister, request: Request) -> Agent:
    """Register (or re-register) the agent of this name and kind.

    An agent token registers agents for its identity: a token bound to one agent only that
    name, and no token an agent another identity registered (``docs/security.md``).
    """
    caller = caller_of(request)
    if caller.bound_agent is not None and body.name != caller.bound_agent:
        raise Forbidden(
            f"this token is bound to agent {caller.bound_agent!r} and can't register agent {body.name!r}; "
            f"start the agent with --name {caller.bound_agent}, or use a token made for {body.name!r}"
        )
    with db(request) as session:
        if caller.is_agent:
            existing = session.scalar(select(AgentRow).where(AgentRow.name == body.name, AgentRow.kind == body.kind))
            if existing is not None and existing.owner not in (None, caller.identity):
                raise Forbidden(
                    f"agent {body.name!r} ({body.kind}) was registered with another token; an agent token can't "
                    "take over another's agent: give this agent another --name, or use that agent's token"
                )
        registered = agents.register_agent(session, body)
        if caller.is_agent:
            session.execute(update(AgentRow).where(AgentRow.id == registered.id).values(owner=caller.identity))
            session.commit()
        return registered


@router.post("/{agent_id}/heartbeat", response_model=Agent, dependencies=[AGENT])
def agent_heartbeat(agent_id: str, request: Request) -> Agent:
    with db(request) as session:
        check_agent(session, caller_of(request), agent_id)  # an unknown agent is the model's 404
        return agents.agent_heartbeat(session, agent_id)


@router.get("", response_model=list[Agent], dependencies=[AGENT])
def list_agents(request: Request) -> list[Agent]:
    """Every agent, last seen first; ``live``: seen within the ``server.agent_seen_window`` setting."""
    with db(request) as session:
        return agents.list_agents(session, request.app.state.settings.agent_seen_window)
