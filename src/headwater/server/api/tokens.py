from __future__ import annotations

from fastapi import APIRouter, Request, Response

from headwater.schemas.tokens import TokenCreate, TokenCreated, TokenInfo
from headwater.server.deps import ADMIN, db
from headwater.server.models import tokens
from headwater.server.routing import CheckedRoute

router = APIRouter(prefix="/tokens", tags=["tokens"], route_class=CheckedRoute)


@router.post("", response_model=TokenCreated, status_code=201, dependencies=[ADMIN])
def create_token(body: TokenCreate, request: Request) -> TokenCreated:
    """A new token; the response is the only time it is shown."""
    with db(request) as session:
        return tokens.create_token(session, body)


@router.get("", response_model=list[TokenInfo], dependencies=[ADMIN])
def list_tokens(request: Request) -> list[TokenInfo]:
    """Every token's id, name, scope, binding, creation and expiry; never the token itself."""
    with db(request) as session:
        return tokens.list_tokens(session)


@router.delete("/{token_id}", status_code=204, dependencies=[ADMIN])
def revoke_token(token_id: str, request: Request) -> Response:
    """Revoke (delete) a token: every server process of the database refuses it from the next request on."""
    with db(request) as session:
        tokens.revoke_token(session, token_id)
    return Response(status_code=204)
