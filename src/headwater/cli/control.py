"""``headwater cancel RUN_ID`` and ``headwater retry RUN_ID``: act on one flow run through the API.

Both are also ``headwater runs cancel|retry`` (``runs.py`` adds them to its group).
Cancelling is the server's ``POST /runs/{id}/cancel``; a retry is a new run of
the same flow version with the same parameters and labels.
"""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import api_command, labels, make_client


def add_parser(commands: Any) -> None:
    add_cancel(commands)
    add_retry(commands)


def add_cancel(commands: Any) -> None:
    cancel = commands.add_parser(
        "cancel", help="cancel a flow run: a Scheduled one at once, a claimed one through its process"
    )
    cancel.add_argument("flow_run_id", metavar="RUN_ID", help="the flow run's id")
    cancel.set_defaults(handler=_cancel)


def add_retry(commands: Any) -> None:
    retry = commands.add_parser(
        "retry", help="run a finished flow run again: same flow version, parameters and labels; prints the new id"
    )
    retry.add_argument("flow_run_id", metavar="RUN_ID", help="the finished flow run's id")
    retry.add_argument("--run-name", help="a name for the new run (default: a new generated one)")
    retry.add_argument("--quiet", "-q", action="store_true", help="print only the new run's id")
    retry.set_defaults(handler=_retry)


@api_command
def _cancel(args: argparse.Namespace) -> int:
    with make_client() as client:
        run = client.cancel_flow_run(args.flow_run_id)
    then = "" if run.state == "Cancelled" else " (its process stops it, then it is Cancelled)"
    print(f"Flow run {run.run_name!r} ({run.id}): {run.state}{then}")
    return 0


@api_command
def _retry(args: argparse.Namespace) -> int:
    from headwater.core.run_states import FINISHED

    with make_client() as client:
        old = client.get_flow_run(args.flow_run_id)
        if old.state not in FINISHED:
            finished = ", ".join(sorted(FINISHED))
            raise ValueError(
                f"flow run {old.id} is {old.state}, not finished: only a finished run ({finished}) can be retried; "
                f"wait for it (`headwater runs watch {old.id}`) or cancel it first (`headwater cancel {old.id}`)"
            )
        new_id = client.create_flow_run(
            old.flow_id, parameters=old.parameters, labels=old.labels, run_name=args.run_name
        )
        new = client.get_flow_run(new_id)
    if args.quiet:
        print(new_id)
    else:
        print(
            f"Flow run {new.run_name!r} created: id {new_id}, a retry of {old.id} ({old.state}), "
            f"labels [{labels(new.labels)}]"
        )
    return 0
