"""The claim route, with long-polling: it answers as soon as a matching run is due.

A waiting claim holds no thread and runs no query: it awaits the process's shared waiter
(``services/waiter.py``) under its label set, which wakes it only when a run its labels fit
may have become claimable (``services/notifier.py``), when a run it was told about becomes
due, or when the sweep (``services/sweep.py``) finds a run no notice announced. Its
connection closing ends the wait at once, without claiming.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Request, Response

from headwater.schemas.agents import ClaimRequest, ClaimResponse
from headwater.schemas.flow_runs import FlowRun
from headwater.server.deps import AGENT
from headwater.server.identity import caller_of
from headwater.server.models.work import ClaimAsk, ClaimTaken
from headwater.server.routing import CheckedRoute
from headwater.server.services.claims import QUIET_DELAY

router = APIRouter(prefix="/work", tags=["work"], route_class=CheckedRoute)


@router.post("/claim", response_model=ClaimResponse, dependencies=[AGENT])
async def claim(body: ClaimRequest, request: Request) -> Response:
    """Due runs whose labels fit this agent's (L ⊆ A, and L = ∅ only when A = ∅), now Submitted to it.

    With ``wait`` > 0 and nothing due, waits until a matching run is due or
    ``wait`` seconds pass (at most the ``server.max_claim_wait`` setting). Once
    the caller has gone (its connection closed — e.g. the agent died), the wait
    ends without claiming: a run must never be handed to an agent that can't
    receive it.
    """
    waiters = request.app.state.waiters
    claims = request.app.state.claims
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(body.wait, request.app.state.settings.max_claim_wait)
    key = tuple(body.labels)
    gone: asyncio.Future[object] | None = None
    checked: asyncio.Future[ClaimTaken] | None = None
    try:
        while True:
            # A label set that found nothing, with nothing changed since, skips the search
            # (``ClaimAsk.look``); the claim still checks its agent and answers a retry, in a
            # batch made while this waits (``services/claims.py``).
            since = waiters.stamp(key)
            quiet = waiters.known_empty(key)
            ask = ClaimAsk(caller_of(request), body.agent_id, body.labels, body.limit, body.claim_id, not quiet)
            if quiet:
                # patient: made within QUIET_DELAY, together with others (a wait=0 claim: at once)
                checked = asyncio.ensure_future(claims.claim(ask, patient=deadline - loop.time() > QUIET_DELAY))
                runs: list[FlowRun] = []
            else:
                taken = await claims.claim(ask)
                runs = taken.answer()
                if not runs:
                    waiters.note_empty(key, since, taken.due)
            while not runs and loop.time() < deadline and not waiters.stopped:
                if gone is None:
                    gone = asyncio.ensure_future(_disconnected(request))
                woken = await waiters.wait(key, since, deadline - loop.time(), gone, checked)
                if gone.done():
                    return _answer([])
                if checked is not None and (checked.done() or woken):
                    runs, checked = (await checked).answer(), None  # its refusal (404, 403) raises here
                if woken:
                    break
            if checked is not None:
                runs = (await checked).answer()
            if runs or loop.time() >= deadline or waiters.stopped:
                return _answer(runs)
    finally:
        if checked is not None and not checked.done():
            checked.cancel()  # the caller went away: its answer is not awaited
        if gone is not None and not gone.done():
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await gone


async def _disconnected(request: Request) -> object:
    """Completes when the client goes away (the body was read already: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return message


def _answer(runs: list[FlowRun]) -> Response:
    # serialized once here, as run creation does: FastAPI would validate the answer model again
    return Response(ClaimResponse(flow_runs=runs).model_dump_json(), media_type="application/json")
