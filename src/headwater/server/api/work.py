"""The claim route, with long-polling: it answers as soon as a matching run is due."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from headwater.schemas.agents import ClaimRequest, ClaimResponse
from headwater.schemas.flow_runs import FlowRun
from headwater.server.deps import AGENT
from headwater.server.identity import caller_of
from headwater.server.models.common import utcnow
from headwater.server.models.work import ClaimAsk
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
    claims = request.app.state.claims
    ask = ClaimAsk(caller_of(request), body.agent_id, body.labels, body.limit, body.claim_id)
    deadline = time.monotonic() + min(body.wait, request.app.state.settings.max_claim_wait)
    while True:
        seen = notifier.generation
        taken = await claims.claim(ask)
        runs = taken.answer()
        remaining = deadline - time.monotonic()
        if runs or remaining <= 0:
            return _answer(runs)
        timeout = min(remaining, RECHECK_SECONDS)
        if taken.due is not None:
            timeout = min(timeout, max((taken.due - utcnow()).total_seconds(), 0.005))
        await run_in_threadpool(notifier.wait, seen, timeout)
        if await request.is_disconnected():
            return _answer([])


def _answer(runs: list[FlowRun]) -> Response:
    # serialized once here, as run creation does: FastAPI would validate the answer model again
    return Response(ClaimResponse(flow_runs=runs).model_dump_json(), media_type="application/json")
