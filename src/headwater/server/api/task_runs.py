from __future__ import annotations

from fastapi import APIRouter, Request

from headwater.schemas.task_runs import TaskRun, TaskRunBatch
from headwater.server.deps import AGENT, db
from headwater.server.identity import guard_run_write
from headwater.server.models import task_runs
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/runs/{flow_run_id}/task_runs", tags=["task runs"], route_class=CheckedRoute)


@router.post("", response_model=list[TaskRun], dependencies=[AGENT])
def upsert_task_runs(flow_run_id: str, body: TaskRunBatch, request: Request) -> list[TaskRun]:
    """Create or update task runs by slug, in one batch."""
    with db(request) as session:
        guard_run_write(session, request, flow_run_id)
        return task_runs.upsert_task_runs(session, flow_run_id, body)


@router.get("", response_model=list[TaskRun], dependencies=[AGENT])
def list_task_runs(flow_run_id: str, request: Request) -> list[TaskRun]:
    with db(request) as session:
        return task_runs.list_task_runs(session, flow_run_id)
