"""Exceptions a task raises to end its run in a chosen state.

The task runner (``headwater.engine.task_runner``) turns each into its state.
"""

from __future__ import annotations


class Signal(Exception):
    """Base of the signals; the message becomes the state's message."""


class SKIP(Signal):
    """End the task as Skipped (a success); downstream tasks skip too by default."""


class FAIL(Signal):
    """End the task as Failed at once, without using its retries."""


class RETRY(Signal):
    """Fail this attempt and retry, if the task has retries left."""
