"""What routes depend on: a database session per request, and the caller's token scope."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from headwater.schemas.common import utcnow
from headwater.schemas.tokens import TokenInfo
from headwater.server.errors import Forbidden, Unauthorized
from headwater.server.identity import Caller, token_identity
from headwater.server.models.tokens import SCOPES, lookup_token


def db(request: Request) -> Session:
    """A new database session; use it as ``with db(request) as session:`` inside the route.

    Not a FastAPI dependency on purpose: a sync generator dependency costs two
    extra thread hops per request (enter and exit), measurable in ``bench/api.py``.
    """
    session: Session = request.app.state.sessions()
    return session


def require(scope: str) -> Callable[..., Coroutine[Any, Any, None]]:
    """A dependency that lets the request through only with a token of ``scope`` (or wider).

    The token is looked up on every request (one indexed read): a revoked token is
    refused from the next request on, on every server process of the database. The
    caller it names is kept as ``request.state.caller`` (``identity.py``).
    """

    async def check(request: Request) -> None:
        state: Any = request.app.state
        if not state.auth:
            return
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token:
            raise Unauthorized("this server needs an API token: send `Authorization: Bearer <token>`")
        found = await run_in_threadpool(_lookup, state, token)
        if found is None:
            raise Unauthorized(
                "the API token is not valid (unknown or revoked); make one with `headwater server create-token`"
            )
        if found.expires is not None and found.expires <= utcnow():
            raise Unauthorized(
                f"the API token {found.name!r} expired at {found.expires:%Y-%m-%d %H:%M:%S} UTC; make a new one "
                "with `headwater server create-token` (or POST /tokens with an admin token)"
            )
        if scope not in SCOPES[found.scope]:
            raise Forbidden(f"a token of scope {found.scope!r} can't do this; it needs scope {scope!r}")
        identity = token_identity(found.id, found.agent, found.pool) if found.scope == "agent" else None
        request.state.caller = Caller(found.scope, identity, found.agent, found.id)

    return check


def _lookup(state: Any, token: str) -> TokenInfo | None:
    with state.sessions() as session:
        return lookup_token(session, token)


AGENT = Depends(require("agent"))
USER = Depends(require("user"))
ADMIN = Depends(require("admin"))
