"""Flow-run state transitions: the server decides, agents and runners propose.

Each rule names the states a run may move to from a state. Finished states are
final. Some moves are the server's own and can't be proposed over the API:
Scheduled → Submitted happens only by a claim, and → Scheduled only by recovery.
"""

from __future__ import annotations

from headwater.schemas.flow_runs import FINISHED_STATES, FLOW_RUN_STATES
from headwater.server.errors import Conflict, Invalid

#: from-state → the states a proposal may move it to.
ALLOWED: dict[str, frozenset[str]] = {
    "Scheduled": frozenset({"Cancelled", "Failed"}),
    "Submitted": frozenset({"Running", "Failed", "Cancelling", "Cancelled", "Scheduled"}),
    "Running": frozenset({"Success", "Failed", "Cancelling", "Cancelled"}),
    "Cancelling": frozenset({"Cancelled", "Failed", "Success"}),
    **{state: frozenset() for state in FINISHED_STATES},
}


def check_transition(current: str, proposed: str) -> None:
    """Raise Invalid for an unknown state, Conflict for a move the rules forbid."""
    if proposed not in FLOW_RUN_STATES:
        raise Invalid(f"state {proposed!r} is not a flow-run state; use one of {', '.join(FLOW_RUN_STATES)}")
    allowed = ALLOWED.get(current, frozenset())
    if proposed not in allowed:
        shown = ", ".join(sorted(allowed)) or "none: it is finished"
        raise Conflict(f"a flow run can't move from {current} to {proposed} (allowed from {current}: {shown})")


def cancel_target(current: str) -> str:
    """Where a cancel request moves a run: straight to Cancelled if nothing runs it yet."""
    if current == "Scheduled":
        return "Cancelled"
    if current in ("Submitted", "Running"):
        return "Cancelling"
    raise Conflict(f"a {current} flow run can't be cancelled")
