"""The API application: routes under ``/api/v1``, the database, the claim waiter and notifier, recovery.

``create_app`` connects to and migrates the database before returning, so a bad
database is a clear error at start-up, not on the first request.
"""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException
from starlette.routing import Match

from headwater import __version__
from headwater.config.settings import ServerSettings
from headwater.server.api import (
    agents,
    flow_runs,
    flows,
    health,
    logs,
    projects,
    retention,
    secrets,
    task_runs,
    tokens,
    work,
)
from headwater.server.api import whoami as token_self
from headwater.server.api.claim_path import ClaimShortPath
from headwater.server.database.engine import create_db_engine, database_trouble, database_url, full_watch
from headwater.server.database.migrate import upgrade
from headwater.server.errors import ApiError
from headwater.server.secret_key import SecretKey
from headwater.server.services.claims import ClaimQueue
from headwater.server.services.notifier import WorkNotifier, peer_channel
from headwater.server.services.recovery import RecoveryService
from headwater.server.services.sweep import ChangeSweep
from headwater.server.services.waiter import ClaimWaiters
from headwater.server.ui import mount_ui

API_PREFIX = "/api/v1"
#: Most validation errors one 422 lists.
MAX_ERRORS_SHOWN = 20


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_required(settings: ServerSettings) -> bool:
    """Tokens are required when set so, and always when bound beyond loopback."""
    if settings.auth is None:
        return not is_loopback(settings.host)
    return settings.auth


def create_app(settings: ServerSettings, home: Path, recovery: bool = True) -> FastAPI:
    """The ASGI app for ``settings``; its database is connected and migrated."""
    secret_key = SecretKey(settings.secrets_key, home)
    secret_key.check()  # a malformed key is a start-up error, not a failed request later
    engine = create_db_engine(database_url(settings.database_url, home), settings.statement_timeout)
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    waiters = ClaimWaiters()  # long-polling claims wait here, on the event loop
    notifier = WorkNotifier(waiters.wake, peer_channel(engine), waiters.release)  # also reaches other server processes
    sweep = ChangeSweep(engine, waiters.wake, lambda: waiters.active)
    service = RecoveryService(sessions, settings, notifier.notify) if recovery else None
    claims = ClaimQueue(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        waiters.start()
        restore = _answer_waiters_on_stop(waiters)
        notifier.start()
        sweep.start()
        if service is not None:
            service.start()
        try:
            yield
        finally:
            waiters.stop()
            if service is not None:
                service.stop()
            sweep.stop()
            notifier.stop()
            claims.stop()
            engine.dispose()
            restore()

    app = FastAPI(
        title="headwater API",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.notifier = notifier
    app.state.waiters = waiters
    app.state.claims = claims
    app.state.auth = auth_required(settings)
    app.state.secret_key = secret_key
    # the claim route first: agents long-poll it far more often than anything else is called,
    # and each request is matched against the routes in order
    for module in (work, health, projects, flows, retention, flow_runs, task_runs, logs, agents, tokens, secrets):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(token_self.router, prefix=API_PREFIX)  # GET /whoami (the UI asks what it may write)
    app.state.short_claims = 0  # claims answered by the short path (tests)
    app.add_middleware(ClaimShortPath, path=f"{API_PREFIX}/work/claim")
    mount_ui(app)  # the web UI at / and /ui/ (server/ui/)

    @app.exception_handler(ApiError)
    def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.detail}, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's answer lists every error with its input: a list of 100,000 wrong items
        # would answer megabytes. The first few, each input cut short, say what is wrong.
        errors = list(exc.errors())
        shown: list[Any] = [_short_error(e) for e in errors[:MAX_ERRORS_SHOWN]]
        if len(errors) > MAX_ERRORS_SHOWN:
            shown.append({"type": "more", "loc": [], "msg": f"and {len(errors) - MAX_ERRORS_SHOWN} more errors"})
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(shown)})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # Starlette's 405 lists the methods of the first route of the path only (GET /runs and
        # POST /runs are two routes): list them all
        if exc.status_code == 405:
            methods = _allowed_methods(app, request)
            if methods:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        return await http_exception_handler(request, exc)

    @app.exception_handler(StatementError)
    def data_error(_request: Request, exc: StatementError) -> JSONResponse:
        # a full disk, a statement cancelled by server.statement_timeout, a locked SQLite
        # database: 503, the client may try again later; /health reports a full database
        trouble = database_trouble(exc)
        if trouble is not None:
            kind, reason = trouble
            if kind == "full":
                full_watch(engine).reason = reason
            return JSONResponse(status_code=503, content={"detail": _trouble_message(kind, reason, settings)})
        # a value the database refuses (e.g. a NUL character on PostgreSQL; a value the driver
        # can't convert) is bad input; any other database error — a bad statement, a missing
        # parameter — is the server's fault and stays a 500
        if isinstance(exc, DBAPIError):
            if not isinstance(exc, DataError):
                raise exc
        elif not isinstance(exc.orig, (ValueError, OverflowError, TypeError)):
            raise exc
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return JSONResponse(status_code=422, content={"detail": f"a value can't be stored: {reason}"})

    return app


def _answer_waiters_on_stop(waiters: ClaimWaiters) -> Callable[[], None]:
    """Answer waiting claims as soon as SIGINT or SIGTERM asks the server to stop; returns the undo.

    uvicorn lets open requests finish before it shuts the app down, and a long-polling
    claim would hold the stop for its whole wait. The server's own handlers (uvicorn's)
    still run after ours. Nothing is done off the main thread (an app served in a thread).
    """
    previous: dict[int, Any] = {}

    def stopping(signum: int, frame: Any) -> None:
        waiters.stop()
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            handler = signal.getsignal(signum)
            if callable(handler):
                previous[signum] = handler
                signal.signal(signum, stopping)
        except ValueError:  # not the main thread
            return lambda: None

    def restore() -> None:
        for signum, handler in previous.items():
            try:
                if signal.getsignal(signum) is stopping:
                    signal.signal(signum, handler)
            except ValueError:
                pass

    return restore


def _trouble_message(kind: str, reason: str, settings: ServerSettings) -> str:
    if kind == "full":
        return (
            f"database full: {reason}; nothing of this request was stored. Free space on the disk that holds the "
            "database (or raise its quota), then try again"
        )
    if kind == "cancelled":
        return (
            f"the database cancelled the query after {settings.statement_timeout:g}s ({reason}): it ran past "
            "server.statement_timeout (env HEADWATER__SERVER__STATEMENT_TIMEOUT); narrow the request (fewer filters, "
            "a smaller page) or try again when the database is less busy"
        )
    return f"the database is busy ({reason}); try again in a moment"


def _allowed_methods(app: FastAPI, request: Request) -> set[str]:
    """The methods some route of the app takes at the request's path."""
    allowed = set()
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.add(method)
    return allowed


def _short_error(error: Any) -> Any:
    """A validation error with its input cut to a short repr (which also escapes what JSON can't hold)."""
    error = dict(error)
    if "input" in error:
        value = error["input"]
        if not (isinstance(value, str | int | float | bool) or value is None) or (
            isinstance(value, str) and len(value) > 200
        ):
            text = repr(value)
            error["input"] = text if len(text) <= 200 else text[:200] + "…"
    error.pop("url", None)
    return error
