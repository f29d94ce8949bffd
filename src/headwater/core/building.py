"""The stack of flows being built with ``with Flow(...) as flow:``.

``task.py`` and ``flow.py`` both need it; it lives here so neither imports the
other at module level.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headwater.core.flow import Flow

_local = threading.local()


def active_flow() -> Flow | None:
    """The innermost flow whose ``with`` block is open in this thread, if any."""
    stack: list[Flow] | None = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def push(flow: Flow) -> None:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(flow)


def pop(flow: Flow) -> None:
    """Close ``flow``'s block; flows opened inside it and left open are closed too."""
    stack: list[Flow] = getattr(_local, "stack", [])
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is flow:
            del stack[i:]
            return
