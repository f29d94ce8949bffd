"""Triggers: when a task may run, given the final states of its upstream tasks.

A trigger is a function ``(upstream_states) -> bool``. When it returns False
the task ends TriggerFailed without running. A task with no upstream tasks
always runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from headwater.core.state import State

Trigger = Callable[[Collection[State]], bool]


def all_successful(upstream_states: Collection[State]) -> bool:
    """Run only if every upstream task succeeded (Skipped counts). The default."""
    return all(s.is_successful() for s in upstream_states)


def all_finished(upstream_states: Collection[State]) -> bool:
    """Run once every upstream task finished, however it ended."""
    return all(s.is_finished() for s in upstream_states)


#: An alias of :func:`all_finished`, for clean-up tasks.
always_run = all_finished


def any_successful(upstream_states: Collection[State]) -> bool:
    """Run if at least one upstream task succeeded."""
    return not upstream_states or any(s.is_successful() for s in upstream_states)


def any_failed(upstream_states: Collection[State]) -> bool:
    """Run if at least one upstream task failed (e.g. to alert)."""
    return not upstream_states or any(s.is_failed() for s in upstream_states)


def all_failed(upstream_states: Collection[State]) -> bool:
    """Run only if every upstream task failed."""
    return all(s.is_failed() for s in upstream_states)


#: Triggers by the name that flow metadata records.
TRIGGERS: dict[str, Trigger] = {
    "all_successful": all_successful,
    "all_finished": all_finished,
    "always_run": all_finished,
    "any_successful": any_successful,
    "any_failed": any_failed,
    "all_failed": all_failed,
}


def trigger_name(trigger: Trigger) -> str:
    """The name flow metadata records: a built-in's name, else an import path."""
    for name, fn in TRIGGERS.items():
        if fn is trigger:
            return name
    return f"{trigger.__module__}.{getattr(trigger, '__qualname__', repr(trigger))}"
