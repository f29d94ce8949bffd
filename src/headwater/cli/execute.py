"""``headwater execute flow-run``: the flow-run process an agent starts (``load_and_run_flow``).

Exit codes: 0 when the run ended Success (or continues in a process its
environment started), 1 when it ended otherwise (Failed, Cancelled) or the API
could not be reached, 2 when it can't start (no flow-run id, bad settings, a run
that is not this process's to run).
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
    from headwater.client import ApiError, ClientError
    from headwater.environments.execution import load_and_run_flow

    try:
        state = load_and_run_flow()
    except ValueError as exc:  # ExecutionError, ConfigError
        return fail(str(exc), 2)
    except ClientError as exc:
        return fail(str(exc), 2)
    except ApiError as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    if state.is_successful() or state.is_running():
        return 0
    print(f"headwater: flow run ended {state.name}: {state.message}", file=sys.stderr)
    return 1
