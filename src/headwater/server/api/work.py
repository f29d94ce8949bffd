"""The claim route, with long-polling: it answers as soon as a matching run is due."""

from __future__ import annotations

import datetime
import threading
import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from headwater.schemas.agents import ClaimRequest, ClaimResponse
from headwater.schemas.flow_runs import FlowRun
from headwater.server.deps import AGENT, db
from headwater.server.errors import Forbidden
from headwater.server.identity import caller_of, check_agent
from headwater.server.models import work
from headwater.server.models.common import utcnow
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/work", tags=["work"], route_class=CheckedRoute)

#: Longest sleep between checks while long-polling. Runs made through another server process
#: on the same database wake the wait too (``services/notifier.py``); this only bounds what a
#: lost notice (e.g. while a PostgreSQL listener reconnects) can cost.
RECHECK_SECONDS = 5.0


@router.post("/claim", response_model=ClaimResponse, dependencies=[AGENT])
async def claim(body: ClaimRequest, request: Request) -> Response:
    """Due runs whose labels fit this agent's (L ⊆ A, and L = ∅ only when A = ∅), now Submitted to it.

    With ``wait`` > 0 and nothing due, waits until a matching run is due or
    ``wait`` seconds pass (at most the ``server.max_claim_wait`` setting). Once
    the caller has gone (its connection closed — e.g. the agent died), the wait
    ends without claiming: a run must never be handed to an agent that can't
    receive it.
    """
    notifier = request.app.state.notifier
    deadline = time.monotonic() + min(body.wait, request.app.state.settings.max_claim_wait)
    while True:
        if await request.is_disconnected():
            return _answer([])
        seen = notifier.generation
        runs, due = await run_in_threadpool(_claim_in_turn, request, body)
        remaining = deadline - time.monotonic()
        if runs or remaining <= 0:
            return _answer(runs)
        timeout = min(remaining, RECHECK_SECONDS)
        if due is not None:
            timeout = min(timeout, max((due - utcnow()).total_seconds(), 0.005))
        await run_in_threadpool(notifier.wait, seen, timeout)


def _answer(runs: list[FlowRun]) -> Response:
    # serialized once here, as run creation does: FastAPI would validate the answer model again
    return Response(ClaimResponse(flow_runs=runs).model_dump_json(), media_type="application/json")


#: On SQLite a claim is a write transaction, and writers take turns at the database's one write
#: lock: claims of this process take turns here first. Waiting in SQLite's busy handler instead
#: sleeps in growing steps (1, 2, 5, … 100 ms) while the lock may already be free, which cut
#: ten concurrent claimers to a fraction of one's rate (``bench/api.py``, ``single_claims``).
_SQLITE_TURN = threading.Lock()


def _claim_in_turn(request: Request, body: ClaimRequest) -> tuple[list[FlowRun], datetime.datetime | None]:
    if request.app.state.engine.dialect.name != "sqlite":
        return _claim_once(request, body)
    with _SQLITE_TURN:
        return _claim_once(request, body)


def _claim_once(request: Request, body: ClaimRequest) -> tuple[list[FlowRun], datetime.datetime | None]:
    """One claim attempt; when it finds nothing, also when the next matching run is due."""
    caller = caller_of(request)
    with db(request) as session:
        agent = check_agent(session, caller, body.agent_id)
        if caller.is_agent and agent is not None and sorted(agent.labels) != body.labels:
            raise Forbidden(
                f"agent {agent.name!r} registered with labels {sorted(agent.labels)} and can't claim with "
                f"{body.labels}: an agent token claims only for the labels its agent registered with; "
                "register the agent again with the new labels"
            )
        runs = work.claim(session, body.agent_id, body.labels, body.limit, body.claim_id)
        return runs, (None if runs else work.next_due(session, body.labels))
