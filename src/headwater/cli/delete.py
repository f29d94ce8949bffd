"""``headwater delete secret NAME``: remove things from the API server."""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import api_command, make_client


def add_parser(commands: Any) -> None:
    delete = commands.add_parser("delete", help="delete things on the API server")
    sub = delete.add_subparsers(dest="delete_command", required=True)
    secret = sub.add_parser("secret", help="delete a secret from the API's secret store")
    secret.add_argument("name", help="the secret's name (case-insensitive)")
    secret.set_defaults(handler=_delete_secret)


@api_command
def _delete_secret(args: argparse.Namespace) -> int:
    with make_client() as client:
        client.delete_secret(args.name)
    print(f"Secret {args.name.upper()!r} deleted")
    return 0
