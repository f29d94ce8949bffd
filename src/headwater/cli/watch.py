"""Following a flow run from the CLI: its state changes and new log lines, until it finishes.

Used by ``headwater run --project ... --watch`` (``runs.py``) and
``headwater logs RUN_ID --follow`` (``logs.py``). It polls the API; the log
records written before the run finished are all shown before it returns.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from headwater.cli.api import when

if TYPE_CHECKING:
    from headwater.client import Client
    from headwater.schemas.flow_runs import FlowRun
    from headwater.schemas.logs import LogRecord

#: Seconds between polls while following a run.
POLL_SECONDS = 0.25


def format_record(record: LogRecord) -> str:
    """One log line: ``time LEVEL [task] message``."""
    task = f" [{record.task_slug}]" if record.task_slug else ""
    return f"{when(record.timestamp)} {record.level:<8}{task} {record.message}"


def format_state(run: FlowRun) -> str:
    """One state line: ``flow run NAME: STATE (message)``."""
    message = f" ({run.state_message})" if run.state_message else ""
    return f"flow run {run.run_name}: {run.state}{message}"


def print_logs(client: Client, flow_run_id: str, offset: int = 0, out: TextIO | None = None) -> int:
    """Print the run's log records from ``offset``; returns the offset after the last."""
    from headwater.client.flow_runs import LOG_PAGE

    out = out or sys.stdout
    while True:
        page = client.read_logs(flow_run_id, offset=offset, limit=LOG_PAGE)
        for record in page.records:
            print(format_record(record), file=out, flush=True)
        offset = page.next_offset
        if len(page.records) < LOG_PAGE:
            return offset


def follow(
    client: Client, flow_run_id: str, states: bool = True, poll: float = POLL_SECONDS, out: TextIO | None = None
) -> FlowRun:
    """Print new log lines (and, with ``states``, each state change) until the run is finished; return it."""
    from headwater.core.run_states import FINISHED

    out = out or sys.stdout
    offset, seen = 0, None
    while True:
        run = client.get_flow_run(flow_run_id)
        offset = print_logs(client, flow_run_id, offset, out)  # after reading the state: no line is missed
        if states and (run.state, run.state_message) != seen:
            print(format_state(run), file=out, flush=True)
            seen = (run.state, run.state_message)
        if run.state in FINISHED:
            return run
        time.sleep(poll)
