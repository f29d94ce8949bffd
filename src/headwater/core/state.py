"""The State hierarchy: what a flow run or a task run is doing, or how it ended.

States are plain objects with ``__slots__`` so a 10,000-task run keeps little
engine state per task. The engine (``headwater.engine``) creates them; nothing
here does I/O.

The tree::

    State
    ├── Pending
    │   ├── Scheduled
    │   │   └── Retrying
    │   └── Submitted
    ├── Running
    └── Finished
        ├── Success
        │   └── Skipped
        ├── Failed
        │   ├── TriggerFailed
        │   └── TimedOut
        └── Cancelled
"""

from __future__ import annotations

from typing import Any


class State:
    """Base of every state.

    Args:
        message: why the run is in this state (an error, a reason to skip, ...).
        result: the task's return value, or for a finished flow a dict of
            each task to its final State.
    """

    __slots__ = ("attempts", "finished_at", "message", "result", "started_at")

    def __init__(self, message: str | None = None, result: Any = None) -> None:
        self.message = message
        self.result = result
        #: wall-clock seconds (``time.time()``) the run started and finished.
        self.started_at: float | None = None
        self.finished_at: float | None = None
        #: how many times the task's code ran (1 when it was not retried).
        self.attempts = 0

    @property
    def name(self) -> str:
        """The state's class name, e.g. ``"Success"``."""
        return type(self).__name__

    @property
    def duration(self) -> float | None:
        """Seconds between start and finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def __repr__(self) -> str:
        if self.message:
            return f"<{self.name}: {self.message!r}>"
        return f"<{self.name}>"

    def is_pending(self) -> bool:
        return isinstance(self, Pending)

    def is_scheduled(self) -> bool:
        return isinstance(self, Scheduled)

    def is_submitted(self) -> bool:
        return isinstance(self, Submitted)

    def is_running(self) -> bool:
        return isinstance(self, Running)

    def is_finished(self) -> bool:
        return isinstance(self, Finished)

    def is_successful(self) -> bool:
        return isinstance(self, Success)

    def is_failed(self) -> bool:
        return isinstance(self, Failed)

    def is_skipped(self) -> bool:
        return isinstance(self, Skipped)

    def is_retrying(self) -> bool:
        return isinstance(self, Retrying)

    def is_cancelled(self) -> bool:
        return isinstance(self, Cancelled)

    def is_timed_out(self) -> bool:
        return isinstance(self, TimedOut)


class Pending(State):
    """Not started yet."""

    __slots__ = ()


class Scheduled(Pending):
    """Due to start at a time (now, unless told otherwise)."""

    __slots__ = ()


class Retrying(Scheduled):
    """Failed, and will run again after the task's ``retry_delay``."""

    __slots__ = ()


class Submitted(Pending):
    """Handed to an agent or an executor, not yet running."""

    __slots__ = ()


class Running(State):
    """Its code is running."""

    __slots__ = ()


class Finished(State):
    """Base of every final state."""

    __slots__ = ()


class Success(Finished):
    """Finished without error; ``result`` is the return value."""

    __slots__ = ()


class Skipped(Success):
    """Not run, on purpose (e.g. an upstream task was skipped). Counts as success."""

    __slots__ = ()


class Failed(Finished):
    """Finished with an error; ``message`` holds it, ``result`` the exception.

    ``traceback`` holds the formatted traceback when the task raised.
    """

    __slots__ = ("traceback",)

    def __init__(self, message: str | None = None, result: Any = None) -> None:
        super().__init__(message, result)
        self.traceback: str | None = None


class TriggerFailed(Failed):
    """Not run because its trigger was not met (e.g. an upstream task failed)."""

    __slots__ = ()


class TimedOut(Failed):
    """Ran longer than the task's ``timeout``."""

    __slots__ = ()


class Cancelled(Finished):
    """Stopped on request before it finished."""

    __slots__ = ()


#: Every state class by name, for rebuilding a state from its name.
STATES: dict[str, type[State]] = {
    cls.__name__: cls
    for cls in (
        State, Pending, Scheduled, Retrying, Submitted, Running, Finished, Success,
        Skipped, Failed, TriggerFailed, TimedOut, Cancelled,
    )
}
