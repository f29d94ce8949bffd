"""``headwater create project NAME`` and ``headwater create secret NAME``: make them on the API server.

A secret's value comes from ``--value``, ``--from-env VAR`` or standard input
(a prompt without echo on a terminal), so it need not be typed where the shell
keeps its history. The CLI never prints a value. ``docs/secrets.md`` has more.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from headwater.cli.api import api_command, make_client, when


def add_parser(commands: Any) -> None:
    create = commands.add_parser("create", help="create things on the API server")
    sub = create.add_subparsers(dest="create_command", required=True)
    project = sub.add_parser("project", help="create a project (flows are registered into projects)")
    project.add_argument("name", help="the project's name")
    project.set_defaults(handler=_create_project)
    secret = sub.add_parser(
        "secret",
        help="create or replace a secret in the API's secret store (read by flow-run processes)",
        description="The value is read from --value, --from-env VAR, or standard input (a hidden prompt on a "
        "terminal; one trailing newline is dropped). Prefer --from-env or stdin: --value stays in shell history.",
    )
    secret.add_argument("name", help="the secret's name: letters, digits and underscores (case-insensitive)")
    source = secret.add_mutually_exclusive_group()
    source.add_argument("--value", help="the value itself (visible in shell history and process lists)")
    source.add_argument("--from-env", metavar="VAR", help="read the value from the environment variable VAR")
    secret.add_argument("--project", dest="projects", action="append", default=None, metavar="PROJECT",
                        help="scope it to a project (repeatable): an agent token reads it only while it holds a "
                        "run of one of them")  # fmt: skip
    secret.set_defaults(handler=_create_secret)


@api_command
def _create_project(args: argparse.Namespace) -> int:
    with make_client() as client:
        project_id = client.create_project(args.name)
    print(f"Project {args.name!r} created: id {project_id}")
    return 0


def secret_value(args: argparse.Namespace) -> str:
    """The value for ``create secret``: ``--value``, ``--from-env``, else standard input."""
    if args.value is not None:
        return str(args.value)
    if args.from_env is not None:
        value = os.environ.get(args.from_env)
        if value is None:
            raise ValueError(f"--from-env {args.from_env}: the environment variable {args.from_env} is not set")
        return value
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"value of secret {args.name}: ")
    value = sys.stdin.read()
    if value.endswith("\r\n"):
        return value[:-2]
    return value[:-1] if value.endswith("\n") else value


@api_command
def _create_secret(args: argparse.Namespace) -> int:
    value = secret_value(args)
    if not value:
        raise ValueError(
            f"secret {args.name!r} needs a value: pass --value, --from-env VAR, or pipe it to standard input"
        )
    with make_client() as client:
        info = client.set_secret(args.name, value, projects=args.projects)
    print(f"Secret {info.name!r} set (updated {when(info.updated)} UTC)")
    return 0
