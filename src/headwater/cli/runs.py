"""The API form of ``headwater run``, and the ``headwater runs ls|watch|cancel|retry`` group.

``run --project P --name FLOW`` creates a flow run on the server; with
``--watch`` it follows the run (``watch.py``) and exits 0 only if it ends
Success. The local form (``headwater run FILE``) is in ``main.py``; cancel and
retry are ``control.py``, the live task table ``task_view.py``.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from headwater.cli.api import add_label_option, api_command, labels, make_client, table, when
from headwater.core.run_states import FINISHED, FlowRunState, parse_state


def state_option(text: str) -> str:
    """``--state``: a flow-run state in any case, as its canonical name."""
    try:
        return parse_state(text).value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Any) -> None:
    from headwater.cli import control

    runs = commands.add_parser("runs", help="flow runs for a terminal: list, watch live, cancel, retry")
    sub = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="list flow runs, newest first: id, flow, state, duration, agent, started")
    add_run_filters(ls)
    ls.set_defaults(handler=_ls)
    watch = sub.add_parser(
        "watch", help="a live table of a flow run's tasks and a progress bar, until the run finishes"
    )
    watch.add_argument("flow_run_id", metavar="RUN_ID", help="the flow run's id")
    watch.set_defaults(handler=_watch)
    control.add_cancel(sub)
    control.add_retry(sub)
    prune = sub.add_parser(
        "prune",
        help="delete finished runs (with their task runs, logs and states) that finished longer ago than a window",
    )
    prune.add_argument("--older-than", required=True, type=window_option, metavar="DURATION",
                       help="runs that finished longer ago than this: seconds, or 90m, 12h, 30d")  # fmt: skip
    prune.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    prune.add_argument("--yes", "-y", action="store_true", help="delete without asking (needed when not on a terminal)")
    prune.set_defaults(handler=_prune)


def window_option(text: str) -> float:
    """``--older-than``: a duration (``30d``, ``12h``, ``90m``, seconds) in seconds."""
    from headwater.core.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_filters(parser: argparse.ArgumentParser) -> None:
    """The filters of ``runs ls`` and ``get flow-runs``."""
    parser.add_argument("--state", action="append", type=state_option,
                        help="only runs in this state, any case (repeatable: any of them)")  # fmt: skip
    parser.add_argument("--project", help="only runs of this project's flows")
    parser.add_argument("--flow", help="only runs of flows of this name")
    add_label_option(parser, "only runs carrying this label (repeatable: all must be there)")
    parser.add_argument("--limit", type=int, default=20, help="show at most this many (default 20)")


def duration(run: Any, now: datetime.datetime | None = None) -> str:
    """How long the run ran (so far, while it runs): ``1h02m``, ``3m05s``, ``4.2s``; ``-`` before it started."""
    if run.start_time is None:
        return "-"
    end = run.end_time or (None if run.state in FINISHED else now or datetime.datetime.now(datetime.UTC))
    if end is None:
        return "-"
    seconds = max((end - run.start_time).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def runs_page(client: Any, args: argparse.Namespace) -> Any:
    """The first page of runs the filters of ``add_run_filters`` ask for (``--limit`` checked)."""
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, not {args.limit}")
    return client.list_flow_runs_page(
        state=args.state, project_name=args.project, flow_name=args.flow, label=args.label, limit=args.limit
    )


def print_more(page: Any) -> None:
    """Say how many runs the page left out, if any."""
    if page.total > len(page.flow_runs):
        more = "" if page.total_exact else "+"  # a long history is counted up to 100 past the page
        print(f"({len(page.flow_runs)} of {page.total}{more}; use --limit to see more)")


@api_command
def _ls(args: argparse.Namespace) -> int:
    with make_client() as client:
        page = runs_page(client, args)
        agents = {a.id: a.name for a in client.list_agents()} if any(r.agent_id for r in page.flow_runs) else {}
    rows = [
        [r.id, r.flow_name, r.state, duration(r), agents.get(r.agent_id, r.agent_id) if r.agent_id else "-",
         when(r.start_time)]
        for r in page.flow_runs
    ]  # fmt: skip
    print(table(["id", "flow", "state", "duration", "agent", "started"], rows, empty="no flow runs"))
    print_more(page)
    return 0


@api_command
def _prune(args: argparse.Namespace) -> int:
    """Count first (a refusal comes before any question), ask unless ``--yes``, then delete request by request."""
    import sys

    from headwater.core.durations import format_duration

    window = format_duration(args.older_than)
    with make_client() as client:
        counted = client.prune_flow_runs(args.older_than, dry_run=True)
        what = (f"{counted.runs:,} finished run(s) that finished before {when(counted.cutoff)} UTC (older than "
                f"{window}), with {counted.task_runs:,} task run(s), {counted.logs:,} log line(s) and "
                f"{counted.states:,} state(s)")  # fmt: skip
        if not counted.runs:
            print(f"Nothing to prune: no run finished before {when(counted.cutoff)} UTC (older than {window})")
            return 0
        if args.dry_run:
            print(f"Would delete {what}")
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                raise ValueError(
                    f"this would delete {what}; pass --yes to delete without a prompt (standard input is not a "
                    "terminal), or --dry-run to only count"
                )
            if input(f"Delete {what}? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Nothing deleted")
                return 1
        deleted = {"runs": 0, "task_runs": 0, "logs": 0, "states": 0, "batches": 0}
        while True:
            done = client.prune_flow_runs(args.older_than)
            for key in deleted:
                deleted[key] += getattr(done, key)
            if done.remaining and done.runs:
                print(f"deleted {deleted['runs']:,} run(s); {done.remaining:,} to go", flush=True)
                continue
            break
    print(f"Deleted {deleted['runs']:,} finished run(s) older than {window}, with {deleted['task_runs']:,} task "
          f"run(s), {deleted['logs']:,} log line(s) and {deleted['states']:,} state(s), in {deleted['batches']} "
          "batch(es)")  # fmt: skip
    return 0


@api_command
def _watch(args: argparse.Namespace) -> int:
    from headwater.cli.task_view import watch_tasks

    with make_client() as client:
        run = watch_tasks(client, args.flow_run_id)
    return 0 if run.state == FlowRunState.SUCCESS else 1


def check_form(args: argparse.Namespace) -> None:
    """ValueError when the arguments mix the local form and the API form of ``run``."""
    if args.project is not None:
        if args.file is not None:
            raise ValueError(
                f"give FILE (run {args.file} here) or --project with --name (run through the API), not both"
            )
        if not args.name:
            raise ValueError("--project needs --name FLOW: the registered flow to run")
        if args.executor or args.executor_kwargs is not None:
            raise ValueError(
                "--executor and --executor-kwargs are for `headwater run FILE`; a run through the API uses the "
                "flow's own executor"
            )
        return
    if args.file is None:
        raise ValueError("give a flow FILE to run here, or --project P --name FLOW to run through the API")
    given = [flag for flag, value in (("--label", args.label), ("--run-name", args.run_name),
                                      ("--watch", args.watch)) if value]  # fmt: skip
    if args.executor_kwargs is not None and not args.executor:
        raise ValueError(
            "--executor-kwargs needs --executor: they are that executor's arguments (the flow's own executor keeps "
            "its own); give e.g. --executor local-dask --executor-kwargs '{\"num_workers\": 2}'"
        )
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
        run = follow(client, flow_run_id, stuck_after=args.stuck_after)
    return 0 if run.state == FlowRunState.SUCCESS else 1
