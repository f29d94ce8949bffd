"""``POST /runs/prune``: delete finished runs past a window (``server/services/retention.py``).

The router's lifespan also runs the periodic prune (``RetentionService``) while the app
serves, when ``server.prune_older_than`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

from headwater.schemas.retention import PruneRequest, PruneResult
from headwater.server.deps import USER
from headwater.server.routing import CheckedRoute
from headwater.server.services import retention


@asynccontextmanager
async def periodic_prune(app: FastAPI) -> AsyncIterator[None]:
    """Start the server's retention thread for the app's life, when ``server.prune_older_than`` is set."""
    settings = app.state.settings
    service = None
    if settings.prune_older_than is not None:
        service = retention.RetentionService(app.state.sessions, settings)
        service.start()
    try:
        yield
    finally:
        if service is not None:
            service.stop()


#: Seconds one request goes on deleting before it answers (with ``remaining``): well inside a client's timeout.
REQUEST_SECONDS = 10.0

router = APIRouter(prefix="/runs", tags=["retention"], route_class=CheckedRoute, lifespan=periodic_prune)


@router.post("/prune", response_model=PruneResult, dependencies=[USER])
def prune_runs(body: PruneRequest, request: Request) -> PruneResult:
    """Delete finished runs that finished longer ago than ``older_than`` seconds, with their task runs, logs
    and states, in batches; at most ``max_runs`` and about 10 s per request (``remaining``: how many are left).

    409 when an unfinished run was due before the window (it names them and the fix); ``dry_run`` counts only.
    """
    settings = request.app.state.settings
    return retention.prune(
        request.app.state.sessions,
        body.older_than,
        settings.prune_batch_size,
        max_runs=body.max_runs,
        dry_run=body.dry_run,
        max_seconds=REQUEST_SECONDS,
    )
