"""``headwater runs watch RUN_ID``: a flow run's tasks as a live table with a progress bar.

On a terminal the table is redrawn in place every poll until the run is
finished; when standard output is not a terminal (a pipe, a CI log) each change
is printed once as a plain line (``task SLUG: STATE``), then the final table.
The state-and-log follower of ``run --watch`` and ``logs -f`` is ``watch.py``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from headwater.cli.api import table
from headwater.cli.watch import POLL_SECONDS, format_state

if TYPE_CHECKING:
    from headwater.client import Client
    from headwater.schemas.flow_runs import FlowRun
    from headwater.schemas.task_runs import TaskRun

#: Engine task states that are not finished (everything else is: Success, Failed, Skipped, ...).
UNFINISHED = frozenset({"Pending", "Scheduled", "Retrying", "Submitted", "Running"})
BAR_WIDTH = 30


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[##########----------]  5/10 tasks``."""
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'-' * (width - filled)}] {done:>{len(str(total))}}/{total} tasks"


def render(run: FlowRun, slugs: list[str], tasks: dict[str, TaskRun]) -> str:
    """The run's state line, the progress bar and one row per task (those not reported yet as Pending)."""
    order = slugs + sorted(set(tasks) - set(slugs))
    rows = []
    for slug in order:
        task = tasks.get(slug)
        state = task.state if task else "Pending"
        message = (task.state_message or "") if task else ""
        rows.append([slug, state, str(task.attempts) if task else "-", message.replace("\n", " ")[:80]])
    done = sum(1 for slug in order if slug in tasks and tasks[slug].state not in UNFINISHED)
    return "\n".join(
        [format_state(run), progress_bar(done, len(order)), table(["task", "state", "attempts", "message"], rows)]
    )


def watch_tasks(client: Client, flow_run_id: str, out: TextIO | None = None, poll: float = POLL_SECONDS) -> FlowRun:
    """Show the run's tasks until the run is finished; return the finished run."""
    from headwater.core.run_states import FINISHED

    out = out or sys.stdout
    live = out.isatty()
    run = client.get_flow_run(flow_run_id)
    slugs = [task.slug for task in client.get_flow(run.flow_id).metadata.tasks]
    drawn = 0  # lines on screen (live)
    seen: dict[str, tuple[str, str | None]] = {}  # the last state and message per task, and of the run (plain)
    while True:
        run = client.get_flow_run(flow_run_id)
        tasks = {task.task_slug: task for task in client.get_task_runs(flow_run_id)}  # after the run: none missed
        finished = run.state in FINISHED
        if live:
            text = render(run, slugs, tasks)
            # move up over the last drawing and clear to the end of the screen
            print(f"\x1b[{drawn}F\x1b[J" if drawn else "", end="", file=out)
            print(text, file=out, flush=True)
            drawn = text.count("\n") + 1
        else:
            changes = {slug: (task.state, task.state_message) for slug, task in tasks.items()}
            changes["\0run"] = (run.state, run.state_message)
            for key, value in changes.items():
                if seen.get(key) != value:
                    if key == "\0run":
                        print(format_state(run), file=out, flush=True)
                    else:
                        message = f" ({value[1]})" if value[1] else ""
                        print(f"task {key}: {value[0]}{message}", file=out, flush=True)
                    seen[key] = value
            if finished:
                print(render(run, slugs, tasks), file=out, flush=True)
        if finished:
            return run
        time.sleep(poll)
