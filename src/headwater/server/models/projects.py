"""Project queries. Route: ``server/api/projects.py``."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headwater.schemas.projects import Project, ProjectCreate
from headwater.server.database.orm import FlowRow, ProjectRow
from headwater.server.errors import Conflict, NotFound
from headwater.server.models.common import get_or_404, new_id, utcnow


def _project(row: ProjectRow, flow_count: int = 0) -> Project:
    return Project(id=row.id, name=row.name, created=row.created, flow_count=flow_count)


def create_project(session: Session, body: ProjectCreate) -> Project:
    if session.scalar(select(ProjectRow.id).where(ProjectRow.name == body.name)) is not None:
        raise Conflict(f"project {body.name!r} already exists")
    row = ProjectRow(id=new_id(), name=body.name, created=utcnow())
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"project {body.name!r} already exists") from None
    return _project(row)


def list_projects(session: Session) -> list[Project]:
    counts = dict(
        session.execute(
            select(FlowRow.project_id, func.count(func.distinct(FlowRow.name))).group_by(FlowRow.project_id)
        )
        .tuples()
        .all()
    )
    rows = session.scalars(select(ProjectRow).order_by(ProjectRow.name)).all()
    return [_project(r, counts.get(r.id, 0)) for r in rows]


def project_by_name(session: Session, name: str) -> ProjectRow:
    row = session.scalar(select(ProjectRow).where(ProjectRow.name == name))
    if row is None:
        raise NotFound(f"project {name!r} not found; create it with `headwater create project {name}`")
    return row


def delete_project(session: Session, project_id: str) -> None:
    """Delete a project with its flows, their runs, task runs and logs."""
    row = get_or_404(session, ProjectRow, project_id, "project")
    session.delete(row)
    session.commit()
