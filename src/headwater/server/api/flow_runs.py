from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.convertors import StringConvertor, register_url_convertor

from headwater.core.run_states import FlowRunState
from headwater.schemas.flow_runs import (
    Explain,
    FlowRun,
    FlowRunBatch,
    FlowRunBatchCreate,
    FlowRunCreate,
    FlowRunPage,
    FlowRunStateEntry,
    SetState,
)
from headwater.server.deps import AGENT, USER, db
from headwater.server.identity import guard_run_write
from headwater.server.models import flow_runs, run_creation, run_states
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/runs", tags=["flow runs"], route_class=CheckedRoute)


class RunId(StringConvertor):
    """A run id in a path: any segment but the names of ``/runs``' own routes (``batch``, ``prune``).

    Without it ``GET /runs/batch`` would be read as the run with id 'batch', and a 405 for
    ``/runs/batch`` would list GET among the methods the path takes (its ``Allow`` header).
    """

    regex = r"(?!(?:batch|prune)$)[^/]+"


register_url_convertor("run_id", RunId())


@router.post("", response_model=FlowRun, status_code=201, dependencies=[USER])
def create_flow_run(body: FlowRunCreate, request: Request) -> Response:
    """Schedule a run; its labels are the flow version's (copied on), unless given."""
    state = request.app.state
    (run,) = run_creation.create_flow_runs(state.engine, [body], state.settings.max_parameters_size)
    state.notifier.notify([run.labels])
    # serialized once here: the hot path of run creation (FastAPI would validate the model again)
    return Response(run.model_dump_json(), status_code=201, media_type="application/json")


@router.post("/batch", response_model=FlowRunBatch, status_code=201, dependencies=[USER])
def create_flow_runs(body: FlowRunBatchCreate, request: Request) -> Response:
    """Schedule every run given, in one transaction: all of them, or none when one is bad (the error names it).

    At most ``server.max_run_batch`` runs (default 1000; more: 413). The answer holds the runs
    in the order given.
    """
    state = request.app.state
    runs = run_creation.create_flow_runs(
        state.engine,
        body.flow_runs,
        state.settings.max_parameters_size,
        batch=True,
        max_runs=state.settings.max_run_batch,
    )
    if runs:
        state.notifier.notify([run.labels for run in runs])
    return Response(FlowRunBatch(flow_runs=runs).model_dump_json(), status_code=201, media_type="application/json")


@router.get("", response_model=FlowRunPage, dependencies=[AGENT])
def list_flow_runs(
    request: Request,
    state: Annotated[list[str] | None, Query()] = None,
    flow_id: str | None = None,
    flow_name: str | None = None,
    project_name: str | None = None,
    agent_id: Annotated[str | None, Query(max_length=36, description="Runs this agent holds or held last.")] = None,
    label: Annotated[list[str] | None, Query()] = None,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FlowRunPage:
    """Runs matching all filters (every ``label`` given must be on the run), newest first."""
    with db(request) as session:
        return flow_runs.list_flow_runs(
            session,
            state=state,
            flow_id=flow_id,
            flow_name=flow_name,
            project_name=project_name,
            agent_id=agent_id,
            label=label,
            since=since,
            until=until,
            offset=offset,
            limit=limit,
        )


@router.get("/{flow_run_id:run_id}", response_model=FlowRun, dependencies=[AGENT])
def get_flow_run(flow_run_id: str, request: Request) -> FlowRun:
    with db(request) as session:
        return flow_runs.get_flow_run(session, flow_run_id)


@router.post("/{flow_run_id}/state", response_model=FlowRun, dependencies=[AGENT])
def set_flow_run_state(flow_run_id: str, body: SetState, request: Request) -> FlowRun:
    """Propose a state; 409 when the rules forbid the move, ``version`` is stale or the claim was superseded."""
    with db(request) as session:
        guard_run_write(session, request, flow_run_id)
        run = flow_runs.set_flow_run_state(session, flow_run_id, body)
        if run.state == FlowRunState.SCHEDULED:
            request.app.state.notifier.notify([run.labels])
        return run


@router.post("/{flow_run_id}/cancel", response_model=FlowRun, dependencies=[USER])
def cancel_flow_run(flow_run_id: str, request: Request) -> FlowRun:
    """Scheduled runs become Cancelled; Submitted and Running ones Cancelling (their process stops them)."""
    with db(request) as session:
        return flow_runs.cancel_flow_run(session, flow_run_id)


@router.post("/{flow_run_id}/heartbeat", response_model=FlowRun, dependencies=[AGENT])
def heartbeat(flow_run_id: str, request: Request) -> FlowRun:
    """The run's process is alive; 409 (claim-superseded) when it writes under a claim that was taken from it."""
    with db(request) as session:
        guard_run_write(session, request, flow_run_id)
        return flow_runs.heartbeat(session, flow_run_id)


@router.get("/{flow_run_id}/explain", response_model=Explain, dependencies=[AGENT])
def explain(flow_run_id: str, request: Request) -> Explain:
    """Which live agents could take this run, and which labels the others lack."""
    with db(request) as session:
        return flow_runs.explain(session, flow_run_id, request.app.state.settings.agent_seen_window)


@router.get("/{flow_run_id}/states", response_model=list[FlowRunStateEntry], dependencies=[AGENT])
def list_flow_run_states(flow_run_id: str, request: Request) -> list[FlowRunStateEntry]:
    """Every state the run entered, oldest first, with its message and the agent that held it."""
    with db(request) as session:
        return run_states.list_states(session, flow_run_id)
