"""The states of a flow run on the server, and which of them are final.

These are the run's states as the API records them (``Scheduled`` → ``Submitted`` →
``Running`` → ``Success``/``Failed``/``Cancelled``, with ``Cancelling`` between), not
the engine's :class:`~headwater.core.state.State` objects; the server's transition
rules are ``headwater/server/models/transitions.py``. A :class:`FlowRunState` is a
``str``, so it compares equal to the name on the wire.
"""

from __future__ import annotations

from enum import StrEnum


class FlowRunState(StrEnum):
    """A flow run's state on the server."""

    SCHEDULED = "Scheduled"
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    CANCELLING = "Cancelling"
    SUCCESS = "Success"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


#: The states a run never leaves.
FINISHED: frozenset[FlowRunState] = frozenset({FlowRunState.SUCCESS, FlowRunState.FAILED, FlowRunState.CANCELLED})
#: The states of a run an agent holds: claimed and not finished (what recovery watches).
HELD: frozenset[FlowRunState] = frozenset({FlowRunState.SUBMITTED, FlowRunState.RUNNING, FlowRunState.CANCELLING})


def parse_state(name: str) -> FlowRunState:
    """The state called ``name`` in any case (``scheduled`` → ``Scheduled``).

    Raises:
        ValueError: naming the unknown state and listing the valid ones.
    """
    for state in FlowRunState:
        if state.value.lower() == name.strip().lower():
            return state
    valid = ", ".join(state.value for state in FlowRunState)
    raise ValueError(f"unknown flow-run state {name!r}: the states are {valid} (any case)")
