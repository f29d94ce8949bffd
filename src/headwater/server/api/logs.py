from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from headwater.schemas.logs import LogBatch, LogPage
from headwater.server.deps import AGENT, db
from headwater.server.identity import guard_run_write
from headwater.server.models import logs
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/runs/{flow_run_id}/logs", tags=["logs"], route_class=CheckedRoute)


@router.post("", status_code=201, dependencies=[AGENT])
def append_logs(flow_run_id: str, body: LogBatch, request: Request) -> dict[str, int]:
    """Append a batch of records (413 past ``server.max_log_batch``)."""
    with db(request) as session:
        guard_run_write(session, request, flow_run_id)
        stored = logs.append_logs(session, flow_run_id, body, request.app.state.settings.max_log_batch)
        return {"stored": stored}


@router.get("", response_model=LogPage, dependencies=[AGENT])
def read_logs(
    flow_run_id: str,
    request: Request,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogPage:
    with db(request) as session:
        return logs.read_logs(session, flow_run_id, offset=offset, limit=limit)
