"""The API form of ``headwater run``: ``--project P --name FLOW`` creates a flow run on the server.

With ``--watch`` it follows the run (``watch.py``) and exits 0 only if it ends
Success. The local form (``headwater run FILE``) is in ``main.py``.
"""

from __future__ import annotations

import argparse

from headwater.cli.api import api_command, labels, make_client
from headwater.core.run_states import FlowRunState


def check_form(args: argparse.Namespace) -> None:
    """ValueError when the arguments mix the local form and the API form of ``run``."""
    if args.project is not None:
        if args.file is not None:
            raise ValueError(
                f"give FILE (run {args.file} here) or --project with --name (run through the API), not both"
            )
        if not args.name:
            raise ValueError("--project needs --name FLOW: the registered flow to run")
        if args.executor:
            raise ValueError("--executor is for `headwater run FILE`; a run through the API uses the flow's own")
        return
    if args.file is None:
        raise ValueError("give a flow FILE to run here, or --project P --name FLOW to run through the API")
    given = [flag for flag, value in (("--label", args.label), ("--run-name", args.run_name),
                                      ("--watch", args.watch)) if value]  # fmt: skip
    if given:
        raise ValueError(f"{', '.join(given)} only work(s) with --project (a run through the API)")


@api_command
def run_via_api(args: argparse.Namespace) -> int:
    """Create the flow run; with ``--watch`` follow it to its end."""
    from headwater.cli.watch import follow

    with make_client() as client:
        flow_run_id = client.create_flow_run(
            project_name=args.project,
            flow_name=args.name,
            parameters=dict(args.param),
            labels=args.label,
            run_name=args.run_name,
        )
        run = client.get_flow_run(flow_run_id)
        print(f"Flow run {run.run_name!r} created: id {flow_run_id}, labels [{labels(run.labels)}]", flush=True)
        if not args.watch:
            return 0
        run = follow(client, flow_run_id)
    return 0 if run.state == FlowRunState.SUCCESS else 1
