"""Starting the server (``headwater server start``) and making tokens (``server create-token``)."""

from __future__ import annotations

import logging
from pathlib import Path

from headwater.config.settings import ServerSettings
from headwater.schemas.tokens import TokenCreate, TokenCreated
from headwater.server.app import auth_required, create_app, is_loopback

logger = logging.getLogger("headwater.server")


class StartupError(RuntimeError):
    """The server can't start as configured; the message says why and what to do."""


def check_auth_policy(settings: ServerSettings, token_count: int) -> None:
    """Refuse to serve beyond loopback without tokens, or with auth turned off."""
    if not is_loopback(settings.host) and settings.auth is False:
        raise StartupError(
            f"refusing to bind {settings.host} with auth turned off: beyond 127.0.0.1 every request "
            "needs an API token; remove HEADWATER__SERVER__AUTH=false"
        )
    if auth_required(settings) and token_count == 0:
        raise StartupError(
            f"auth is on (bound to {settings.host}) but the database has no API token: create one with "
            "`headwater server create-token --scope admin` (with the same --database), then start again"
        )


def serve(settings: ServerSettings, home: Path) -> None:
    """Run the server in the foreground until interrupted."""
    import uvicorn

    from headwater.server.models.tokens import token_count

    app = create_app(settings, home)
    with app.state.sessions() as session:
        check_auth_policy(settings, token_count(session))
    auth = "tokens required" if app.state.auth else "open (loopback only)"
    print(
        f"headwater API on http://{settings.host}:{settings.port}/api/v1 — database "
        f"{app.state.engine.url.render_as_string(hide_password=True)}, auth: {auth}",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


def make_token(
    settings: ServerSettings,
    home: Path,
    name: str,
    scope: str,
    agent: str | None = None,
    pool: str | None = None,
    expires_in: float | None = None,
) -> TokenCreated:
    """Create a token directly in the server's database (see ``TokenCreate`` for the binding and expiry)."""
    from headwater.server.models.tokens import create_token

    body = TokenCreate(name=name, scope=scope, agent=agent, pool=pool, expires_in=expires_in)
    app = create_app(settings, home, recovery=False)
    with app.state.sessions() as session:
        created = create_token(session, body)
    app.state.engine.dispose()
    return created
