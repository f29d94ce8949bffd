"""``headwater register --project P path/to/flow.py``: store a flow file's flow and register it.

The flow is loaded like ``headwater run FILE`` loads it; the registering is
``headwater.registration.register_flow`` (default storage: Local).
"""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import add_label_option, api_command, make_client


def add_parser(commands: Any) -> None:
    register = commands.add_parser("register", help="register a flow from a .py file with the API server")
    register.add_argument("file", help="the .py file that builds the flow")
    register.add_argument("--project", required=True, help="the project (see `headwater create project`)")
    register.add_argument("--name", help="which flow, when the file builds several")
    add_label_option(register, "a label added to the flow's environment and storage labels (repeatable)")
    register.add_argument("--no-build", action="store_true", help="don't build the storage (it is built elsewhere)")
    register.set_defaults(handler=_register)


@api_command
def _register(args: argparse.Namespace) -> int:
    from headwater.client.registration import register_flow
    from headwater.storage.script import extract_flow_from_file

    flow = extract_flow_from_file(path=args.file, flow_name=args.name)
    with make_client() as client:
        register_flow(flow, args.project, build=not args.no_build, labels=args.label, client=client)
    return 0
