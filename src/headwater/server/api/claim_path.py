"""The claim's short path: ``POST /work/claim`` served past FastAPI's per-request machinery.

Idle agents call the claim route far more than anything else is called: a thousand of them
long-polling every 30 s are 33 requests a second, each finding nothing. FastAPI's routing,
dependency solving and exception middleware cost about as much as the claim itself
(``bench/agents.py``, ``docs/benchmarks.md``). This ASGI middleware takes the claim's plain
case: it reads the body within ``server.max_request_size``, parses it as the route would
(``routing.strict_json``), validates it with the same model, checks the token with the
same dependency, and calls the same endpoint (``work.claim``). An :class:`ApiError` the
endpoint raises is answered as the app's handler answers it.

Everything else goes to FastAPI untouched, the body replayed: a query string, a body that
is not JSON, too large, invalid or refused by the token check. FastAPI then gives the
answer it always gave, error bodies included, so the short path changes speed only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import StatementError
from starlette.requests import Request
from starlette.responses import JSONResponse

from headwater.schemas.agents import ClaimRequest
from headwater.server.api import work
from headwater.server.deps import require
from headwater.server.errors import ApiError
from headwater.server.routing import UNPARSED, is_json, strict_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_check_agent = require("agent")


class ClaimShortPath:
    """ASGI middleware (``app.add_middleware(ClaimShortPath, path=...)``); see the module docstring."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        state: Any = scope["app"].state
        body, whole = await _read(receive, state.settings.max_request_size)
        if not whole or not is_json(request.headers.get("content-type"), False):
            await self.app(scope, _replay(body, whole, receive), send)
            return
        ask = _validated(body)
        if ask is None:
            await self.app(scope, _replay(body, whole, receive), send)
            return
        try:
            await _check_agent(request)
        except ApiError:  # no token, a bad one, a narrow one: FastAPI's own answer
            await self.app(scope, _replay(body, whole, receive), send)
            return
        try:
            response = await work.claim(ask, request)
        except ApiError as exc:  # the agent unknown (404), another token's (403): as the app's handler answers
            response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                    headers=getattr(exc, "headers", None))  # fmt: skip
        except StatementError as exc:  # the database full or busy: the app's handler (503), or a 500
            response = scope["app"].exception_handlers[StatementError](request, exc)
        state.short_claims += 1
        await response(scope, receive, send)


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body read so far, and whether it is whole and within ``limit`` (else FastAPI takes the request)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _validated(body: bytes) -> ClaimRequest | None:
    """The claim as the route's model reads it; None for anything FastAPI should answer (422s)."""
    if not body:
        return None
    try:
        parsed = strict_json(body)
    except ApiError:
        return None
    if parsed is UNPARSED or not isinstance(parsed, dict):
        return None
    try:
        return ClaimRequest.model_validate(parsed)
    except ValidationError:
        return None


def _replay(body: bytes, whole: bool, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then the connection's own messages."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not whole}
        return await receive()

    return again
