"""Triggers as functions of upstream states (the engine tests run them for real)."""

from __future__ import annotations

import pytest

from headwater.core import triggers
from headwater.core.state import Failed, Skipped, Success, TimedOut, TriggerFailed

OK, SKIP, FAIL, TIMEOUT, TRIGGER = Success(), Skipped(), Failed(), TimedOut(), TriggerFailed()


@pytest.mark.parametrize(
    ("trigger", "states", "fires"),
    [
        (triggers.all_successful, [OK, OK], True),
        (triggers.all_successful, [OK, SKIP], True),
        (triggers.all_successful, [OK, FAIL], False),
        (triggers.all_successful, [TIMEOUT], False),
        (triggers.all_finished, [OK, FAIL, SKIP, TRIGGER], True),
        (triggers.always_run, [FAIL], True),
        (triggers.any_successful, [FAIL, OK], True),
        (triggers.any_successful, [FAIL, TIMEOUT], False),
        (triggers.any_failed, [OK, TIMEOUT], True),
        (triggers.any_failed, [OK, SKIP], False),
        (triggers.all_failed, [FAIL, TRIGGER, TIMEOUT], True),
        (triggers.all_failed, [FAIL, OK], False),
    ],
)
def test_triggers(trigger, states, fires):
    assert trigger(states) is fires


def test_always_run_is_all_finished():
    assert triggers.always_run is triggers.all_finished


def test_trigger_names():
    assert triggers.trigger_name(triggers.any_failed) == "any_failed"
    assert triggers.trigger_name(triggers.always_run) == "all_finished"

    def custom(states):
        return True

    assert triggers.trigger_name(custom).endswith("test_trigger_names.<locals>.custom")
    assert set(triggers.TRIGGERS) == {
        "all_successful", "all_finished", "always_run", "any_successful", "any_failed", "all_failed",
    }
