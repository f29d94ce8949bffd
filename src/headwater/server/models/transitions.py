"""Flow-run state transitions: the server decides, agents and runners propose.

Each rule names the states a run may move to from a state. Finished states are
final. Some moves are the server's own and can't be proposed over the API:
Scheduled → Submitted happens only by a claim, and → Scheduled only by recovery.
"""

from __future__ import annotations

from headwater.core.run_states import FINISHED, FlowRunState
from headwater.server.errors import Conflict, Invalid

S = FlowRunState

#: from-state → the states a proposal may move it to.
ALLOWED: dict[FlowRunState, frozenset[FlowRunState]] = {
    S.SCHEDULED: frozenset({S.CANCELLED, S.FAILED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.FAILED, S.CANCELLING, S.CANCELLED, S.SCHEDULED}),
    S.RUNNING: frozenset({S.SUCCESS, S.FAILED, S.CANCELLING, S.CANCELLED}),
    S.CANCELLING: frozenset({S.CANCELLED, S.FAILED, S.SUCCESS}),
    **{state: frozenset() for state in FINISHED},
}


def check_transition(current: str, proposed: str) -> None:
    """Raise Invalid for an unknown state, Conflict for a move the rules forbid."""
    if proposed not in S.__members__.values():
        raise Invalid(f"state {proposed!r} is not a flow-run state; use one of {', '.join(S)}")
    allowed = ALLOWED.get(S(current), frozenset()) if current in S.__members__.values() else frozenset()
    if proposed not in allowed:
        shown = ", ".join(sorted(allowed)) or "none: it is finished"
        raise Conflict(f"a flow run can't move from {current} to {proposed} (allowed from {current}: {shown})")


def cancel_target(current: str) -> FlowRunState:
    """Where a cancel request moves a run: straight to Cancelled if nothing runs it yet."""
    if current == S.SCHEDULED:
        return S.CANCELLED
    if current in (S.SUBMITTED, S.RUNNING):
        return S.CANCELLING
    raise Conflict(f"a {current} flow run can't be cancelled")
