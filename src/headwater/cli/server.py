"""``headwater server start`` and ``headwater server create-token``."""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.common import fail


def add_parser(commands: Any) -> None:
    server = commands.add_parser("server", help="run the API server")
    sub = server.add_subparsers(dest="server_command", required=True)
    start = sub.add_parser("start", help="start the API server in the foreground")
    start.add_argument("--host", help="address to bind (default 127.0.0.1; beyond loopback needs tokens)")
    start.add_argument("--port", type=int, help="port (default 4200)")
    start.add_argument("--database", help="sqlite:///file.db or postgresql://... (default: <home>/headwater.db)")
    start.set_defaults(handler=_start)
    token = sub.add_parser("create-token", help="make an API token (shown once)")
    token.add_argument("--scope", choices=["agent", "user", "admin"], required=True)
    token.add_argument("--name", default="token", help="a name to recognise the token by")
    token.add_argument("--database", help="the server's database URL (default: <home>/headwater.db)")
    token.set_defaults(handler=_create_token)


def _settings(args: argparse.Namespace) -> tuple[Any, Any]:
    from headwater.config import get_settings

    settings = get_settings()
    updates = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
            ("database_url", args.database),
        )
        if value is not None
    }
    return settings.server.model_copy(update=updates), settings.home


def _start(args: argparse.Namespace) -> int:
    from headwater.server.database.engine import DatabaseError
    from headwater.server.serve import StartupError, serve

    server_settings, home = _settings(args)
    try:
        serve(server_settings, home)
    except (DatabaseError, StartupError) as exc:
        return fail(str(exc))
    return 0


def _create_token(args: argparse.Namespace) -> int:
    from headwater.server.database.engine import DatabaseError
    from headwater.server.serve import make_token

    server_settings, home = _settings(args)
    try:
        created = make_token(server_settings, home, args.name, args.scope)
    except DatabaseError as exc:
        return fail(str(exc))
    print(created.token)
    return 0
