from __future__ import annotations

from fastapi import APIRouter, Request, Response

from headwater.schemas.flows import Flow, FlowCreate, FlowDetail, FlowRegistered
from headwater.server.deps import AGENT, USER, db
from headwater.server.models import flows
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/flows", tags=["flows"], route_class=CheckedRoute)


@router.post(
    "",
    response_model=FlowRegistered,
    status_code=201,
    dependencies=[USER],
    responses={200: {"model": FlowRegistered, "description": "Identical metadata was registered before: that one."}},
)
def register_flow(body: FlowCreate, request: Request, response: Response) -> FlowRegistered:
    """Register version N of a flow; identical metadata returns the existing version (200)."""
    with db(request) as session:
        registered = flows.register_flow(session, body)
        if not registered.created:
            response.status_code = 200
        return registered


@router.get("", response_model=list[Flow], dependencies=[AGENT])
def list_flows(
    request: Request, project_name: str | None = None, name: str | None = None, include_archived: bool = False
) -> list[Flow]:
    with db(request) as session:
        return flows.list_flows(session, project_name=project_name, name=name, include_archived=include_archived)


@router.get("/{flow_id}", response_model=FlowDetail, dependencies=[AGENT])
def get_flow(flow_id: str, request: Request) -> FlowDetail:
    with db(request) as session:
        return flows.get_flow(session, flow_id)


@router.post("/{flow_id}/archive", response_model=Flow, dependencies=[USER])
def archive_flow(flow_id: str, request: Request) -> Flow:
    with db(request) as session:
        return flows.archive_flow(session, flow_id)
