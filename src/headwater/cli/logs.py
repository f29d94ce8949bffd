"""``headwater logs RUN_ID [-f] [--level L] [--task SLUG]``: a flow run's log lines, optionally until it finishes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from headwater.cli.api import api_command, make_client

if TYPE_CHECKING:
    from headwater.cli.watch import RecordFilter

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _level(text: str) -> str:
    level = text.strip().upper()
    if level not in LEVELS:
        raise argparse.ArgumentTypeError(f"unknown log level {text!r}: the levels are {', '.join(LEVELS)}")
    return level


def add_parser(commands: Any) -> None:
    logs = commands.add_parser("logs", help="print a flow run's logs")
    logs.add_argument("flow_run_id", metavar="RUN_ID", help="the flow run's id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the run finishes")
    logs.add_argument("--level", type=_level, metavar="LEVEL",
                      help=f"only records at this level or above ({', '.join(LEVELS)}; any case)")  # fmt: skip
    logs.add_argument("--task", action="append", metavar="SLUG",
                      help="only records of this task, e.g. extract-1 (repeatable: any of them)")  # fmt: skip
    logs.set_defaults(handler=_logs)


def record_filter(level: str | None, tasks: list[str] | None) -> RecordFilter | None:
    """Keep records at ``level`` or above and of one of ``tasks``; None when nothing is filtered."""
    if level is None and not tasks:
        return None
    lowest = LEVELS.index(level) if level else 0
    wanted = set(tasks or ())

    def keep(record: Any) -> bool:
        rank = LEVELS.index(record.level) if record.level in LEVELS else len(LEVELS)
        return rank >= lowest and (not wanted or record.task_slug in wanted)

    return keep


@api_command
def _logs(args: argparse.Namespace) -> int:
    from headwater.cli.watch import follow, print_logs

    keep = record_filter(args.level, args.task)
    with make_client() as client:
        if args.follow:
            follow(client, args.flow_run_id, states=False, keep=keep)
        else:
            client.get_flow_run(args.flow_run_id)  # an unknown run is an error, not an empty log
            print_logs(client, args.flow_run_id, keep=keep)
    return 0
