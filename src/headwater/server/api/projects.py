from __future__ import annotations

from fastapi import APIRouter, Request, Response

from headwater.schemas.projects import Project, ProjectCreate
from headwater.server.deps import AGENT, USER, db
from headwater.server.models import projects
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/projects", tags=["projects"], route_class=CheckedRoute)


@router.post("", response_model=Project, status_code=201, dependencies=[USER])
def create_project(body: ProjectCreate, request: Request) -> Project:
    with db(request) as session:
        return projects.create_project(session, body)


@router.get("", response_model=list[Project], dependencies=[AGENT])
def list_projects(request: Request) -> list[Project]:
    with db(request) as session:
        return projects.list_projects(session)


@router.delete("/{project_id}", status_code=204, dependencies=[USER])
def delete_project(project_id: str, request: Request) -> Response:
    """Delete the project with its flows and their runs."""
    with db(request) as session:
        projects.delete_project(session, project_id)
        return Response(status_code=204)
