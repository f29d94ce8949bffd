"""The claim route, with long-polling: it answers as soon as a matching run is due."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from headwater.schemas.agents import ClaimRequest, ClaimResponse
from headwater.server.deps import AGENT, db
from headwater.server.models import work
from headwater.server.models.common import utcnow

router = APIRouter(prefix="/work", tags=["work"])

#: Longest sleep between checks while long-polling: covers runs made by another server process.
RECHECK_SECONDS = 1.0


@router.post("/claim", response_model=ClaimResponse, dependencies=[AGENT])
def claim(body: ClaimRequest, request: Request) -> ClaimResponse:
    """Due runs whose labels fit this agent's (L ⊆ A, and L = ∅ only when A = ∅), now Submitted to it.

    With ``wait`` > 0 and nothing due, waits until a matching run is due or
    ``wait`` seconds pass (at most the ``server.max_claim_wait`` setting).
    """
    with db(request) as session:
        notifier = request.app.state.notifier
        deadline = time.monotonic() + min(body.wait, request.app.state.settings.max_claim_wait)
        while True:
            seen = notifier.generation
            runs = work.claim(session, body.agent_id, body.labels, body.limit)
            remaining = deadline - time.monotonic()
            if runs or remaining <= 0:
                return ClaimResponse(flow_runs=runs)
            due = work.next_due(session, body.labels)
            session.close()  # hold no connection while waiting
            timeout = min(remaining, RECHECK_SECONDS)
            if due is not None:
                timeout = min(timeout, max((due - utcnow()).total_seconds(), 0.005))
            notifier.wait(seen, timeout)
