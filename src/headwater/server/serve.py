"""Starting the server (``headwater server start``) and making tokens (``server create-token``)."""

from __future__ import annotations

import errno
import logging
import socket
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


def bind(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before anything is announced.

    Binding first (and handing the socket to uvicorn) means a port in use is
    reported as such before the server says where it listens, and no other
    process can take the port between the check and the start.

    Raises:
        StartupError: the port is taken, not ours to bind, or the host is not an address of this machine.
    """
    again = (
        f"pick another port with --port {port + 1 if port < 65535 else 4200} "
        f"or HEADWATER__SERVER__PORT={port + 1 if port < 65535 else 4200}"
    )
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise StartupError(
            f"can't bind host {host!r}: {exc.strerror}; give an address of this machine with --host"
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port in TIME_WAIT is free
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use (another headwater server, or another program); "
                f"stop it, or {again}"
            ) from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"port {port} on {host} needs privileges to bind; {again}") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(
                f"can't bind {host}:{port}: {host} is not an address of this machine; give one with --host"
            ) from None
        raise StartupError(f"can't bind {host}:{port}: {exc.strerror}; {again}") from None
    return sock


def serve(settings: ServerSettings, home: Path) -> None:
    """Run the server in the foreground until interrupted."""
    import uvicorn

    from headwater.server.models.tokens import token_count

    sock = bind(settings.host, settings.port)
    try:
        app = create_app(settings, home)
        with app.state.sessions() as session:
            check_auth_policy(settings, token_count(session))
    except BaseException:
        sock.close()
        raise
    auth = "tokens required" if app.state.auth else "open (loopback only)"
    print(
        f"headwater API on http://{settings.host}:{settings.port}/api/v1 — database "
        f"{app.state.engine.url.render_as_string(hide_password=True)}, auth: {auth}",
        flush=True,
    )
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


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
