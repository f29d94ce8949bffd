"""The State hierarchy and what each state says about itself."""

from __future__ import annotations

import pickle

import pytest

from headwater.core.state import (
    STATES,
    Cancelled,
    Failed,
    Finished,
    Pending,
    Retrying,
    Running,
    Scheduled,
    Skipped,
    State,
    Submitted,
    Success,
    TimedOut,
    TriggerFailed,
)

PREDICATES = [
    "is_pending", "is_scheduled", "is_submitted", "is_running", "is_finished", "is_successful",
    "is_failed", "is_skipped", "is_retrying", "is_cancelled", "is_timed_out",
]

# which predicates are true for each state; every other one is false
TRUE_FOR = {
    State: set(),
    Pending: {"is_pending"},
    Scheduled: {"is_pending", "is_scheduled"},
    Retrying: {"is_pending", "is_scheduled", "is_retrying"},
    Submitted: {"is_pending", "is_submitted"},
    Running: {"is_running"},
    Finished: {"is_finished"},
    Success: {"is_finished", "is_successful"},
    Skipped: {"is_finished", "is_successful", "is_skipped"},
    Failed: {"is_finished", "is_failed"},
    TriggerFailed: {"is_finished", "is_failed"},
    TimedOut: {"is_finished", "is_failed", "is_timed_out"},
    Cancelled: {"is_finished", "is_cancelled"},
}


@pytest.mark.parametrize("cls", list(TRUE_FOR), ids=lambda c: c.__name__)
def test_predicates(cls):
    state = cls()
    assert {p for p in PREDICATES if getattr(state, p)()} == TRUE_FOR[cls]


def test_hierarchy():
    assert issubclass(Retrying, Scheduled) and issubclass(Scheduled, Pending)
    assert issubclass(Submitted, Pending)
    assert issubclass(Skipped, Success) and issubclass(Success, Finished)
    assert issubclass(TriggerFailed, Failed) and issubclass(TimedOut, Failed)
    assert issubclass(Cancelled, Finished) and not issubclass(Cancelled, Failed)
    assert not issubclass(Running, Finished)
    assert all(issubclass(cls, State) for cls in TRUE_FOR)


def test_message_result_and_name():
    state = Success("done", result=[1, 2])
    assert (state.message, state.result, state.name) == ("done", [1, 2], "Success")
    assert repr(state) == "<Success: 'done'>"
    assert repr(Running()) == "<Running>"
    assert Failed(result=ValueError("x")).message is None


def test_timings_and_attempts():
    state = Success()
    assert (state.started_at, state.finished_at, state.duration, state.attempts) == (None, None, None, 0)
    state.started_at, state.finished_at = 10.0, 12.5
    assert state.duration == 2.5


def test_failed_has_a_traceback_slot():
    state = TimedOut("slow")
    assert state.traceback is None
    state.traceback = "Traceback ..."
    assert state.traceback == "Traceback ..."


def test_states_are_slotted_and_picklable():
    state = Failed("boom", ValueError("boom"))
    state.traceback, state.attempts, state.started_at, state.finished_at = "tb", 2, 1.0, 2.0
    with pytest.raises(AttributeError):
        state.anything = 1  # __slots__: no per-instance dict

    copy = pickle.loads(pickle.dumps(state))

    assert type(copy) is Failed
    assert (copy.message, copy.traceback, copy.attempts, copy.duration) == ("boom", "tb", 2, 1.0)
    assert str(copy.result) == "boom"


def test_states_by_name():
    assert set(STATES) == {cls.__name__ for cls in TRUE_FOR}
    assert all(STATES[name].__name__ == name for name in STATES)
