"""Following a flow run from the CLI: its state changes and new log lines, until it finishes.

Used by ``headwater run --project ... --watch`` (``runs.py``) and
``headwater logs RUN_ID --follow`` (``logs.py``). It polls the API; the log
records written before the run finished are all shown before it returns.
The task table of ``headwater runs watch`` is ``task_view.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
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


#: Which log records to print (``logs --level/--task``); None prints all.
RecordFilter = Callable[["LogRecord"], bool]


def print_logs(
    client: Client,
    flow_run_id: str,
    offset: int = 0,
    out: TextIO | None = None,
    keep: RecordFilter | None = None,
) -> int:
    """Print the run's log records from ``offset`` (those ``keep`` accepts); returns the offset after the last."""
    from headwater.client.flow_runs import LOG_PAGE

    out = out or sys.stdout
    while True:
        page = client.read_logs(flow_run_id, offset=offset, limit=LOG_PAGE)
        for record in page.records:
            if keep is None or keep(record):
                print(format_record(record), file=out, flush=True)
        offset = page.next_offset
        if len(page.records) < LOG_PAGE:
            return offset


def follow(
    client: Client,
    flow_run_id: str,
    states: bool = True,
    poll: float = POLL_SECONDS,
    out: TextIO | None = None,
    keep: RecordFilter | None = None,
    stuck_after: float | None = None,
) -> FlowRun:
    """Print new log lines (and, with ``states``, each state change) until the run is finished; return it.

    With ``stuck_after`` (seconds), a run still Scheduled that long is reported
    once with the ``explain`` verdict (which agents exist and what they lack),
    and watching goes on: a user waiting on a run no agent can take learns why.
    """
    from headwater.core.run_states import FINISHED, FlowRunState

    out = out or sys.stdout
    offset, seen, started, explained = 0, None, time.monotonic(), False
    while True:
        run = client.get_flow_run(flow_run_id)
        offset = print_logs(client, flow_run_id, offset, out, keep)  # after reading the state: no line is missed
        if states and (run.state, run.state_message) != seen:
            print(format_state(run), file=out, flush=True)
            seen = (run.state, run.state_message)
        if run.state in FINISHED:
            return run
        waited = time.monotonic() - started
        if stuck_after is not None and not explained and run.state == FlowRunState.SCHEDULED and waited >= stuck_after:
            print(stuck_notice(client, run, waited), file=out, flush=True)
            explained = True
        time.sleep(poll)


def stuck_notice(client: Client, run: FlowRun, waited: float) -> str:
    """Why a run is still Scheduled after ``waited`` seconds: the explain verdict, and what to do."""
    from headwater.cli.explain import format_verdict

    verdict = format_verdict(client.explain_flow_run(run.id))
    return (
        f"flow run {run.run_name}: still Scheduled after {waited:.0f}s; no agent has taken it yet.\n{verdict}\n"
        f"(still watching; start an agent with the run's labels, e.g. `headwater agent local start"
        f"{''.join(f' -l {label}' for label in run.labels)}`, or press Ctrl-C and `headwater cancel {run.id}`)"
    )
