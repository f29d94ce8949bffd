"""``headwater server start`` and ``headwater server create-token`` (straight into the database)."""

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
    add_binding_options(token)
    token.set_defaults(handler=_create_token)


def add_binding_options(parser: argparse.ArgumentParser) -> None:
    """``--agent``, ``--pool`` and ``--expires-in`` of the commands that make tokens."""
    bind = parser.add_mutually_exclusive_group()
    bind.add_argument("--agent", help="scope agent: bind the token to this one agent name")
    bind.add_argument("--pool", help="scope agent: a named pool; its tokens act for all of its agents")
    parser.add_argument("--expires-in", type=duration, metavar="DURATION",
                        help="the token stops working after this long: seconds, or 90m, 12h, 30d")  # fmt: skip


def duration(text: str) -> float:
    """Seconds from ``3600``, ``90m``, ``12h`` or ``30d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give seconds, or e.g. 90m, 12h, 30d") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"a duration must be more than 0, not {text!r}")
    return seconds


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
    from pydantic import ValidationError

    from headwater.server.database.engine import DatabaseError
    from headwater.server.serve import make_token

    server_settings, home = _settings(args)
    try:
        created = make_token(server_settings, home, args.name, args.scope, args.agent, args.pool, args.expires_in)
    except DatabaseError as exc:
        return fail(str(exc))
    except ValidationError as exc:
        return fail("; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()))
    print(created.token)
    return 0
