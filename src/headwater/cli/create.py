"""``headwater create project NAME``: make a project on the API server."""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import api_command, make_client


def add_parser(commands: Any) -> None:
    create = commands.add_parser("create", help="create things on the API server")
    sub = create.add_subparsers(dest="create_command", required=True)
    project = sub.add_parser("project", help="create a project (flows are registered into projects)")
    project.add_argument("name", help="the project's name")
    project.set_defaults(handler=_create_project)


@api_command
def _create_project(args: argparse.Namespace) -> int:
    with make_client() as client:
        project_id = client.create_project(args.name)
    print(f"Project {args.name!r} created: id {project_id}")
    return 0
