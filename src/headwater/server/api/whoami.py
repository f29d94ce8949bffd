"""``GET /whoami``: the caller's own token and whether it may write; the web UI's side is ``ui/static/api.js``.

Not under ``/tokens``: there ``/tokens/{id}`` takes DELETE, so ``/tokens/me`` would look deletable.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from headwater.schemas.tokens import TokenSelf
from headwater.server.deps import AGENT, db
from headwater.server.identity import caller_of
from headwater.server.models import tokens
from headwater.server.models.tokens import SCOPES
from headwater.server.routing import CheckedRoute

router = APIRouter(tags=["tokens"], route_class=CheckedRoute)


@router.get("/whoami", response_model=TokenSelf, dependencies=[AGENT])
def token_self(request: Request) -> TokenSelf:
    """The caller's token (any valid token may ask) and whether it may write runs; with auth off, anyone may."""
    if not request.app.state.auth:
        return TokenSelf(auth=False, token=None, can_write=True)
    caller = caller_of(request)
    with db(request) as session:
        info = tokens.get_token(session, caller.token_id) if caller.token_id else None
    scope = caller.scope or "agent"
    return TokenSelf(auth=True, token=info, can_write="user" in SCOPES[scope])
