"""``headwater explain RUN_ID``: which live agents could take a run, and what the others lack."""

from __future__ import annotations

import argparse
from typing import Any

from headwater.cli.api import api_command, labels, make_client, table, when


def add_parser(commands: Any) -> None:
    explain = commands.add_parser("explain", help="say which agents can take a flow run, and why not")
    explain.add_argument("flow_run_id", metavar="RUN_ID", help="the flow run's id")
    explain.set_defaults(handler=_explain)


@api_command
def _explain(args: argparse.Namespace) -> int:
    with make_client() as client:
        verdict = client.explain_flow_run(args.flow_run_id)
    print(format_verdict(verdict))
    return 0


def format_verdict(verdict: dict[str, Any]) -> str:
    """The answer of ``GET /runs/{id}/explain`` as text: the run, the verdict, a table of the agents.

    Also printed by ``run --watch`` when a run stays Scheduled (``watch.py``).
    """
    lines = [f"Flow run {verdict['flow_run_id']}: {verdict['state']}, labels [{labels(verdict['labels'])}]"]
    lines.append(verdict["message"])
    if verdict["agents"]:
        rows = [
            [a["name"], a["kind"], labels(a["labels"]), when_text(a["last_seen"]), "yes" if a["can_run"] else "no",
             a["reason"]]
            for a in verdict["agents"]
        ]  # fmt: skip
        lines += ["", table(["agent", "kind", "labels", "last seen", "can run", "why"], rows)]
    return "\n".join(lines)


def when_text(value: str) -> str:
    """An ISO timestamp from the JSON verdict, shown like the other tables."""
    import datetime

    return when(datetime.datetime.fromisoformat(value))
