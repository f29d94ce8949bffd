from __future__ import annotations

from fastapi import APIRouter, Request

from headwater.schemas.agents import Agent, AgentRegister
from headwater.server.deps import AGENT, db
from headwater.server.models import agents
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/agents", tags=["agents"], route_class=CheckedRoute)


@router.post("", response_model=Agent, dependencies=[AGENT])
def register_agent(body: AgentRegister, request: Request) -> Agent:
    """Register (or re-register) the agent of this name and kind."""
    with db(request) as session:
        return agents.register_agent(session, body)


@router.post("/{agent_id}/heartbeat", response_model=Agent, dependencies=[AGENT])
def agent_heartbeat(agent_id: str, request: Request) -> Agent:
    with db(request) as session:
        return agents.agent_heartbeat(session, agent_id)


@router.get("", response_model=list[Agent], dependencies=[AGENT])
def list_agents(request: Request) -> list[Agent]:
    with db(request) as session:
        return agents.list_agents(session)
