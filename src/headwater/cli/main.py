"""``headwater`` entry point. Each command group lives in its own module (``server.py``, ...).

``docs/cli.md`` describes every command. This module is imported by every
flow-run process (``headwater execute flow-run``): keep heavy imports inside
the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from headwater.cli.common import Parser, fail


def _parse_param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"parameter {text!r} must look like NAME=VALUE")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def _json_object(text: str) -> dict[str, Any]:
    """``--executor-kwargs``: a JSON object, or an error naming what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not JSON: {exc}; give an object like '{{\"num_workers\": 2}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} must be a JSON object (the executor's keyword arguments)")
    return value


def _run(args: argparse.Namespace) -> int:
    from headwater.cli.runs import check_form, run_via_api

    check_form(args)
    if args.project is not None:
        return run_via_api(args)
    from headwater.engine.progress import ConsoleProgress, format_states
    from headwater.executors.base import executor_from_path
    from headwater.storage.script import extract_flow_from_file

    flow = extract_flow_from_file(path=args.file, flow_name=args.name)
    executor = executor_from_path(args.executor, args.executor_kwargs) if args.executor else None
    state = flow.run(
        parameters=dict(args.param),
        executor=executor,
        state_handlers=[ConsoleProgress(total=len(flow))],
    )
    print(format_states(state))
    return 0 if state.is_successful() else 1


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``argv`` (the arguments to parse) lets ``agent`` load only the kind asked for."""
    from headwater import __version__

    parser = Parser(prog="headwater", description="headwater workflow orchestrator; docs/cli.md has every command")
    parser.add_argument("--version", action="version", version=f"headwater {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("version", help="print headwater's version")
    run = commands.add_parser(
        "run", help="run a flow: from a .py file here and now, or a registered flow through the API (--project)"
    )
    run.add_argument("file", nargs="?", help="the .py file that builds the flow (run here and now)")
    run.add_argument("--name", help="which flow, when the file has several; with --project, the flow to run")
    run.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        type=_parse_param,
        metavar="NAME=VALUE",
        help="a parameter (value parsed as JSON when it can be)",
    )
    run.add_argument(
        "--executor", help="executor import path or kind, e.g. headwater.executors.LocalDaskExecutor or local-dask"
    )
    run.add_argument(
        "--executor-kwargs",
        type=_json_object,
        metavar="JSON",
        help="the --executor's keyword arguments as a JSON object, e.g. '{\"num_workers\": 2}'",
    )
    api = run.add_argument_group("through the API", "create a flow run on the server instead of running here")
    api.add_argument("--project", help="the registered flow's project: run through the API")
    api.add_argument(
        "--label",
        "-l",
        action="append",
        default=None,
        metavar="LABEL",
        help="a label of the run, instead of the flow's (repeatable)",
    )
    api.add_argument("--run-name", help="a name for the run")
    api.add_argument(
        "--watch", action="store_true", help="follow states and logs until the run ends; exit 1 unless it ends Success"
    )
    api.add_argument(
        "--stuck-after",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="with --watch: when the run is still Scheduled after this long, say which agents could "
        "take it and why not (default 5)",
    )
    run.set_defaults(handler=_run)
    from headwater.cli import (
        agent,
        control,
        create,
        delete,
        execute,
        explain,
        get,
        logs,
        quickstart,
        register,
        runs,
        server,
        token,
    )

    server.add_parser(commands)
    agent.add_parser(commands, argv)
    for group in (create, delete, register, get, runs, control, logs, explain, quickstart, execute, token):
        group.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    if args.command == "version":
        from headwater import __version__

        print(f"headwater {__version__}")
        return 0
    try:
        return int(args.handler(args))
    except (ValueError, TypeError, OSError) as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
