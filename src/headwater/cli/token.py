"""``headwater token ls|create|revoke``: API tokens, through the API (an admin token is needed).

``headwater server create-token`` makes one straight in the database instead (for the
first admin token). ``docs/security.md`` says what each kind of token may do.
"""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import api_command, make_client, table, when
from headwater.cli.server import add_binding_options


def add_parser(commands: Any) -> None:
    token = commands.add_parser("token", help="list, make and revoke API tokens (needs an admin token)")
    sub = token.add_subparsers(dest="token_command", required=True)
    listing = sub.add_parser("ls", help="list the tokens: id, name, scope, binding, expiry (never the token)")
    listing.set_defaults(handler=_list)
    create = sub.add_parser("create", help="make a token through the API (shown once)")
    create.add_argument("--scope", choices=["agent", "user", "admin"], required=True)
    create.add_argument("--name", default="token", help="a name to recognise the token by")
    add_binding_options(create)
    create.set_defaults(handler=_create)
    revoke = sub.add_parser("revoke", help="revoke a token: refused from the next request on")
    revoke.add_argument("token", help="the token's id, or its name when no other token has it")
    revoke.set_defaults(handler=_revoke)


@api_command
def _list(args: argparse.Namespace) -> int:
    with make_client() as client:
        tokens = client.list_tokens()
    rows = [
        (t.id, t.name, t.scope, f"agent {t.agent}" if t.agent else f"pool {t.pool}" if t.pool else "-",
         when(t.created), when(t.expires) if t.expires else "never")
        for t in tokens
    ]  # fmt: skip
    print(table(["ID", "NAME", "SCOPE", "BOUND TO", "CREATED", "EXPIRES"], rows, "no tokens"))
    return 0


@api_command
def _create(args: argparse.Namespace) -> int:
    with make_client() as client:
        created = client.create_token(
            args.name, args.scope, agent=args.agent, pool=args.pool, expires_in=args.expires_in
        )
    print(created.token)
    return 0


@api_command
def _revoke(args: argparse.Namespace) -> int:
    with make_client() as client:
        tokens = client.list_tokens()
        ids = [t.id for t in tokens if t.id == args.token] or [t.id for t in tokens if t.name == args.token]
        if not ids:
            raise ValueError(f"no token has the id or name {args.token!r}; `headwater token ls` lists them")
        if len(ids) > 1:
            raise ValueError(f"{len(ids)} tokens are named {args.token!r}: revoke one by its id (`headwater token ls`)")
        client.revoke_token(ids[0])
    print(f"Token {args.token!r} revoked")
    return 0
