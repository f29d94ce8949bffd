"""A console progress display for local runs, and a table of final states.

``ConsoleProgress`` is a state handler: pass it to ``flow.run(state_handlers=[...])``.
It keeps to in-process executors (LocalExecutor, LocalDaskExecutor); on a Dask
cluster, handlers run in the workers.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, TYPE_CHECKING

from headwater.engine.handlers import StateHandler

if TYPE_CHECKING:
    from headwater.core.state import State
    from headwater.core.task import Task
    from headwater.engine.context import FlowRunContext

_MARKS = {"Success": "✓", "Skipped": "-", "Retrying": "↻", "Running": "…"}


class ConsoleProgress(StateHandler):
    """Prints each task's progress and a running count of finished tasks.

    Args:
        total: how many tasks the run has (for the ``n/total`` count).
        stream: where to print; default ``sys.stdout``.
    """

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self._lock = threading.Lock()

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def on_task_state(self, context: FlowRunContext, task: Task, state: State) -> None:
        if state.is_running():
            return
        with self._lock:
            if state.is_finished():
                self.done += 1
            mark = _MARKS.get(state.name, "✗")
            width = 20
            filled = width * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (width - filled)
            detail = f" — {state.message}" if state.message and not state.is_successful() else ""
            self._print(f"[{bar}] {self.done:>3}/{self.total} {mark} {task.slug}: {state.name}{detail}")

    def on_flow_state(self, context: FlowRunContext, state: State) -> None:
        if state.is_finished():
            self._print(f"flow run {context.flow_run_name}: {state.name}")


def format_states(state: State) -> str:
    """A table of each task's final state, attempts and duration, in run order."""
    tasks = state.result if isinstance(state.result, dict) else {}
    rows = [("task", "state", "attempts", "seconds", "result / message")]
    for t, s in tasks.items():
        shown = s.message if not s.is_successful() or s.is_skipped() else repr(s.result)
        shown = (shown or "")[:60]
        seconds = f"{s.duration:.3f}" if s.duration is not None else "-"
        rows.append((t.slug or t.name, s.name, str(s.attempts), seconds, shown))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"flow: {state.name} ({state.message})")
    return "\n".join(lines)
