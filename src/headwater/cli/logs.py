"""``headwater logs RUN_ID [--follow]``: a flow run's log lines, optionally until it finishes."""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import api_command, make_client


def add_parser(commands: Any) -> None:
    logs = commands.add_parser("logs", help="print a flow run's logs")
    logs.add_argument("flow_run_id", metavar="RUN_ID", help="the flow run's id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the run finishes")
    logs.set_defaults(handler=_logs)


@api_command
def _logs(args: argparse.Namespace) -> int:
    from headwater.cli.watch import follow, print_logs

    with make_client() as client:
        if args.follow:
            follow(client, args.flow_run_id, states=False)
        else:
            client.get_flow_run(args.flow_run_id)  # an unknown run is an error, not an empty log
            print_logs(client, args.flow_run_id)
    return 0
