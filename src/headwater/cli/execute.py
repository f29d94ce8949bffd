"""``headwater execute flow-run``: the flow-run process an agent starts (``load_and_run_flow``).

Exit codes: 0 when the run ended Success (or continues in a process its
environment started), 1 when it ended otherwise (Failed, Cancelled), the API
could not be reached or an unexpected error stopped it, 2 when it can't start (no
flow-run id, bad settings, a run that is not this process's to run). Whenever it
exits with an error, the reason also goes to the file ``context.exit_report``
names (``HEADWATER__CONTEXT__EXIT_REPORT``), which the LocalAgent puts into the
failure message of a run the process left unfinished.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from headwater.cli.common import fail


def add_parser(commands: Any) -> None:
    execute = commands.add_parser("execute", help="run inside a flow-run process (what agents start)")
    sub = execute.add_subparsers(dest="execute_command", required=True)
    flow_run = sub.add_parser(
        "flow-run",
        help="load and run the flow run named by HEADWATER__CONTEXT__FLOW_RUN_ID, reporting to the API",
    )
    flow_run.set_defaults(handler=_flow_run)


def _flow_run(args: argparse.Namespace) -> int:
    return run_flow_run()


def flow_run_main() -> int:
    """``headwater execute flow-run`` without parsing a command line: its exit code, as ``main`` gives it.

    The LocalAgent's warm starter calls this in each process it forks (``agent/zygote.py``);
    building the whole command line's parser would cost more than the rest of the start.
    """
    try:
        return run_flow_run()
    except (ValueError, TypeError, OSError) as exc:  # as cli.main.main
        return fail(str(exc))


def run_flow_run() -> int:
    """Load and run the flow run of ``HEADWATER__CONTEXT__FLOW_RUN_ID``; the exit code (module docstring)."""
    from headwater.client import ApiError, ClientError
    from headwater.environments import execution
    from headwater.environments.execution import load_and_run_flow

    execution.STOP_PROCESS_WHEN_SUPERSEDED = True  # this process is the run's own
    try:
        state = load_and_run_flow()
    except KeyboardInterrupt:
        return 130
    except (ValueError, ClientError) as exc:  # ExecutionError, ConfigError; a refused request
        return _exit(str(exc), 2)
    except ApiError as exc:
        return _exit(str(exc), 1)
    except Exception as exc:  # logged with its traceback by load_and_run_flow
        return _exit(f"the flow-run process failed: {type(exc).__name__}: {exc}", 1)
    if state.is_successful() or state.is_running():
        return 0
    print(f"headwater: flow run ended {state.name}: {state.message}", file=sys.stderr)
    return 1


def _exit(reason: str, code: int) -> int:
    """The reason to stderr and to the exit report (for the agent); the exit code."""
    from headwater.environments.execution import write_exit_report

    write_exit_report(reason)
    return fail(reason, code)
