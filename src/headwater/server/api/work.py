"""The claim route, with long-polling: it answers as soon as a matching run is due.

A waiting claim holds no thread and runs no query: it awaits the process's shared waiter
(``services/waiter.py``) under its label set, which wakes it only when a run its labels fit
may have become claimable (``services/notifier.py``), when a run it was told about becomes
due, or when the sweep (``services/sweep.py``) finds a run no notice announced. Its
connection closing ends the wait at once, without claiming; so does a release of the claim
(``POST /work/claim/release``: its agent is stopping).
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Request, Response

from headwater.schemas.agents import ClaimRelease, ClaimRequest, ClaimResponse
from headwater.schemas.flow_runs import FlowRun
from headwater.server.deps import AGENT, db
from headwater.server.errors import NotFound
from headwater.server.identity import caller_of, check_agent
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
    # A claim with an id can be released (its agent stopping: POST /work/claim/release): it then
    # answers what it holds now, and takes nothing more.
    released = waiters.releasing(body.agent_id, body.claim_id) if body.claim_id and body.wait > 0 else None
    try:
        while True:
            # A label set that found nothing, with nothing changed since, skips the search
            # (``ClaimAsk.look``); the claim still checks its agent and answers a retry, in a
            # batch made while this waits (``services/claims.py``).
            since = waiters.stamp(key)
            quiet = waiters.known_empty(key) or (released is not None and released.done())
            ask = ClaimAsk(caller_of(request), body.agent_id, body.labels, body.limit, body.claim_id, not quiet)
            if quiet:
                # patient: made within QUIET_DELAY, together with others (a wait=0 claim: at once)
                patient = deadline - loop.time() > QUIET_DELAY and not _done(released)
                checked = asyncio.ensure_future(claims.claim(ask, patient=patient))
                runs: list[FlowRun] = []
            else:
                taken = await claims.claim(ask)
                runs = taken.answer()
                if not runs:
                    waiters.note_empty(key, since, taken.due)
            while not runs and loop.time() < deadline and not waiters.stopped and not _done(released):
                if gone is None:
                    gone = asyncio.ensure_future(_disconnected(request))
                woken = await waiters.wait(key, since, deadline - loop.time(), gone, checked, released)
                if gone.done():
                    return _answer([])
                if checked is not None and (checked.done() or woken):
                    runs, checked = (await checked).answer(), None  # its refusal (404, 403) raises here
                if woken:
                    break
            if checked is not None:
                runs = (await checked).answer()  # a released claim too: a retry's runs must reach the agent
            if runs or loop.time() >= deadline or waiters.stopped or _done(released):
                return _answer(runs)
    finally:
        if released is not None:
            waiters.unwatch(body.agent_id, body.claim_id)
        if checked is not None and not checked.done():
            checked.cancel()  # the caller went away: its answer is not awaited
        if gone is not None and not gone.done():
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await gone


@router.post("/claim/release", status_code=204, dependencies=[AGENT])
def release_claim(body: ClaimRelease, request: Request) -> Response:
    """End the wait of this agent's claim now, taking nothing more: the agent is stopping.

    The claim (sent with this ``claim_id``) answers at once with what it holds — nothing,
    unless it had taken runs already, which the agent then puts back. A claim that has not
    reached the server yet is released when it does (within a minute). Heard by every server
    process on the same PostgreSQL database; on SQLite, by this process only (a claim waiting
    on another one answers when its wait ends). The agent must exist (404) and be the
    caller's (an agent token acts for its own agents: 403).
    """
    with db(request) as session:
        if check_agent(session, caller_of(request), body.agent_id) is None:
            raise NotFound(f"agent {body.agent_id!r} not found: there is no claim of it to release")
    request.app.state.notifier.release(body.agent_id, body.claim_id)
    return Response(status_code=204)


def _done(future: asyncio.Future[None] | None) -> bool:
    return future is not None and future.done()


async def _disconnected(request: Request) -> object:
    """Completes when the client goes away (the body was read already: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return message


def _answer(runs: list[FlowRun]) -> Response:
    # serialized once here, as run creation does: FastAPI would validate the answer model again
    return Response(ClaimResponse(flow_runs=runs).model_dump_json(), media_type="application/json")
