from __future__ import annotations

from fastapi import APIRouter, Request

from headwater import __version__
from headwater.schemas.common import Health
from headwater.server.routing import CheckedRoute

router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/health", response_model=Health)
def health(request: Request) -> Health:
    """Whether the server is up, its version and its database kind. Needs no token."""
    return Health(status="ok", version=__version__, database=request.app.state.engine.dialect.name)
