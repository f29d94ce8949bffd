"""What routes depend on: a database session per request, and the caller's token scope."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from headwater.server.errors import Forbidden, Unauthorized
from headwater.server.models.tokens import SCOPES, scope_of


def db(request: Request) -> Session:
    """A new database session; use it as ``with db(request) as session:`` inside the route.

    Not a FastAPI dependency on purpose: a sync generator dependency costs two
    extra thread hops per request (enter and exit), measurable in ``bench/api.py``.
    """
    session: Session = request.app.state.sessions()
    return session


_CACHE_SECONDS = 30.0


def require(scope: str) -> Callable[..., Coroutine[Any, Any, None]]:
    """A dependency that lets the request through only with a token of ``scope`` (or wider)."""

    async def check(request: Request) -> None:
        state: Any = request.app.state
        if not state.auth:
            return
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token:
            raise Unauthorized("this server needs an API token: send `Authorization: Bearer <token>`")
        cached = state.token_cache.get(token)
        if cached is not None and cached[1] > time.monotonic():
            granted = cached[0]
        else:
            granted = await run_in_threadpool(_lookup, state, token)
            if granted is None:
                raise Unauthorized("the API token is not valid; make one with `headwater server create-token`")
            state.token_cache[token] = (granted, time.monotonic() + _CACHE_SECONDS)
        if scope not in SCOPES[granted]:
            raise Forbidden(f"a token of scope {granted!r} can't do this; it needs scope {scope!r}")

    return check


def _lookup(state: Any, token: str) -> str | None:
    with state.sessions() as session:
        return scope_of(session, token)


AGENT = Depends(require("agent"))
USER = Depends(require("user"))
ADMIN = Depends(require("admin"))
