"""Flow (version) queries: registration, listing, archiving. Route: ``server/api/flows.py``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headwater.schemas.flows import Flow, FlowCreate, FlowDetail, FlowMetadata, FlowRegistered
from headwater.server.database.orm import FlowRow, ProjectRow
from headwater.server.errors import Conflict
from headwater.server.models.common import get_or_404, new_id, utcnow
from headwater.server.models.projects import project_by_name


def metadata_hash(metadata: dict[str, Any], labels: list[str]) -> str:
    """What decides whether a registration is "the same flow again".

    Leaves out ``headwater_version`` and where storage keeps each flow
    (``storage.flows``): storing an unchanged flow again writes a new file, but it
    is the same flow.
    """
    canonical = dict(metadata)
    canonical.pop("headwater_version", None)
    if isinstance(canonical.get("storage"), dict):
        canonical["storage"] = {k: v for k, v in canonical["storage"].items() if k != "flows"}
    canonical["labels"] = labels
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def _flow(row: FlowRow, project_name: str) -> Flow:
    return Flow(
        id=row.id,
        project_id=row.project_id,
        project_name=project_name,
        name=row.name,
        version=row.version,
        labels=row.labels,
        archived=row.archived,
        created=row.created,
        parameters=row.flow_metadata.get("parameters", []),
    )


def register_flow(session: Session, body: FlowCreate) -> FlowRegistered:
    """Store a new version of the flow, or return the version with identical metadata.

    Registrations into one project are serialized (on PostgreSQL by locking the
    project's row; SQLite serializes every write transaction), so two identical
    registrations at once make one version, not two.
    """
    project = project_by_name(session, body.project_name)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(ProjectRow.id).where(ProjectRow.id == project.id).with_for_update())
    metadata = body.metadata.model_dump(mode="json")
    labels = sorted(set(metadata["labels"]) | set(body.labels))
    metadata["labels"] = labels
    digest = metadata_hash(metadata, labels)
    same = select(FlowRow).where(FlowRow.project_id == project.id, FlowRow.name == body.metadata.name)
    existing = None
    if body.idempotency_key is not None:
        existing = session.scalar(same.where(FlowRow.idempotency_key == body.idempotency_key))
    if existing is None:
        existing = session.scalar(same.where(FlowRow.metadata_hash == digest).order_by(FlowRow.version.desc()))
    if existing is not None:
        return FlowRegistered(
            id=existing.id, name=existing.name, version=existing.version, labels=existing.labels, created=False
        )
    latest = session.scalar(
        select(func.max(FlowRow.version)).where(FlowRow.project_id == project.id, FlowRow.name == body.metadata.name)
    )
    row = FlowRow(
        id=new_id(),
        project_id=project.id,
        name=body.metadata.name,
        version=(latest or 0) + 1,
        flow_metadata=metadata,
        metadata_hash=digest,
        labels=labels,
        archived=False,
        idempotency_key=body.idempotency_key,
        created=utcnow(),
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            f"flow {body.metadata.name!r} was registered by someone else at the same moment; register again"
        ) from None
    return FlowRegistered(id=row.id, name=row.name, version=row.version, labels=labels, created=True)


def list_flows(
    session: Session, project_name: str | None = None, name: str | None = None, include_archived: bool = False
) -> list[Flow]:
    query = select(FlowRow, ProjectRow.name).join(ProjectRow, ProjectRow.id == FlowRow.project_id)
    if project_name is not None:
        query = query.where(ProjectRow.name == project_name)
    if name is not None:
        query = query.where(FlowRow.name == name)
    if not include_archived:
        query = query.where(FlowRow.archived.is_(False))
    query = query.order_by(ProjectRow.name, FlowRow.name, FlowRow.version)
    return [_flow(row, project) for row, project in session.execute(query).tuples()]


def get_flow(session: Session, flow_id: str) -> FlowDetail:
    row = get_or_404(session, FlowRow, flow_id, "flow")
    project = session.get(ProjectRow, row.project_id)
    assert project is not None
    return FlowDetail(**_flow(row, project.name).model_dump(), metadata=FlowMetadata.model_validate(row.flow_metadata))


def latest_flow(session: Session, project_name: str, flow_name: str) -> FlowRow:
    """The newest unarchived version of a flow, by project and flow name."""
    project = project_by_name(session, project_name)
    row = session.scalar(
        select(FlowRow)
        .where(FlowRow.project_id == project.id, FlowRow.name == flow_name, FlowRow.archived.is_(False))
        .order_by(FlowRow.version.desc())
    )
    if row is None:
        from headwater.server.errors import NotFound

        raise NotFound(
            f"flow {flow_name!r} not found in project {project_name!r}; register it with "
            f"`headwater register --project {project_name} path/to/flow.py`"
        )
    return row


def archive_flow(session: Session, flow_id: str) -> Flow:
    row = get_or_404(session, FlowRow, flow_id, "flow")
    row.archived = True
    project = session.get(ProjectRow, row.project_id)
    assert project is not None
    session.commit()
    return _flow(row, project.name)
