from __future__ import annotations

from fastapi import APIRouter, Response

from headwater.schemas.flows import Flow, FlowCreate, FlowDetail, FlowRegistered
from headwater.server.deps import AGENT, USER, SessionDep
from headwater.server.models import flows

router = APIRouter(prefix="/flows", tags=["flows"])


@router.post("", response_model=FlowRegistered, status_code=201, dependencies=[USER])
def register_flow(body: FlowCreate, session: SessionDep, response: Response) -> FlowRegistered:
    """Register version N of a flow; identical metadata returns the existing version (200)."""
    registered = flows.register_flow(session, body)
    if not registered.created:
        response.status_code = 200
    return registered


@router.get("", response_model=list[Flow], dependencies=[AGENT])
def list_flows(
    session: SessionDep, project_name: str | None = None, name: str | None = None, include_archived: bool = False
) -> list[Flow]:
    return flows.list_flows(session, project_name=project_name, name=name, include_archived=include_archived)


@router.get("/{flow_id}", response_model=FlowDetail, dependencies=[AGENT])
def get_flow(flow_id: str, session: SessionDep) -> FlowDetail:
    return flows.get_flow(session, flow_id)


@router.post("/{flow_id}/archive", response_model=Flow, dependencies=[USER])
def archive_flow(flow_id: str, session: SessionDep) -> Flow:
    return flows.archive_flow(session, flow_id)
