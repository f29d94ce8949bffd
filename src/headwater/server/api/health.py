"""``GET /health``: up, version, database kind — and whether the database said it is full."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from headwater import __version__
from headwater.schemas.common import Health
from headwater.server.database.engine import full_watch
from headwater.server.routing import CheckedRoute

router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "Database full."}})
def health(request: Request, response: Response) -> Health:
    """Whether the server is up, its version and its database kind. Needs no token.

    Answers 503 with status ``database full: <reason>`` after a write failed because
    the database's disk was full, until a write succeeds again.
    """
    engine = request.app.state.engine
    full = full_watch(engine).reason
    if full is not None:
        response.status_code = 503
        return Health(status=f"database full: {full}", version=__version__, database=engine.dialect.name)
    return Health(status="ok", version=__version__, database=engine.dialect.name)
