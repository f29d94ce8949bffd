from __future__ import annotations

from fastapi import APIRouter, Request

from headwater.schemas.tokens import TokenCreate, TokenCreated
from headwater.server.deps import ADMIN, db
from headwater.server.models import tokens
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/tokens", tags=["tokens"], route_class=CheckedRoute)


@router.post("", response_model=TokenCreated, status_code=201, dependencies=[ADMIN])
def create_token(body: TokenCreate, request: Request) -> TokenCreated:
    """A new token; the response is the only time it is shown."""
    with db(request) as session:
        return tokens.create_token(session, body)
