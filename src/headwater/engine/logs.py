"""The ``headwater`` logger: a handler whose records carry the flow-run and task context.

Also importable as ``headwater.utilities.logging`` (where it was first documented).
"""

from __future__ import annotations

import logging
import sys

_HANDLER_NAME = "headwater-console"


class RunContextFilter(logging.Filter):
    """Adds ``flow_run`` and ``task`` to each record from the engine's context variables.

    Runs only for records that are emitted, so it costs nothing on the hot path.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from headwater.engine.context import current, current_flow_run

        task_run = current()
        flow_run = current_flow_run()
        record.flow_run = f" {flow_run.flow_run_name}" if flow_run else ""
        record.task = f" [{task_run.task.slug}]" if task_run else ""
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in the stubs
    """Writes to whatever ``sys.stderr`` is now (so captured and redirected stderr work)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(level: str | None = None, fmt: str | None = None) -> logging.Logger:
    """Give the ``headwater`` logger its console handler and level (once; later calls update).

    ``level`` and ``fmt`` default to the ``logging`` settings.
    """
    if level is None or fmt is None:
        from headwater.config import get_settings

        settings = get_settings().logging
        level = level or settings.level
        fmt = fmt or settings.format
    logger = logging.getLogger("headwater")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(RunContextFilter())
        logger.addHandler(handler)
        logger.propagate = False
    handler.setFormatter(logging.Formatter(fmt))
    return logger


def logging_configured() -> bool:
    """Whether this process's ``headwater`` logger has its console handler."""
    return any(h.get_name() == _HANDLER_NAME for h in logging.getLogger("headwater").handlers)


def log_format() -> str | None:
    """The format of this process's headwater console handler, if it has one."""
    for handler in logging.getLogger("headwater").handlers:
        if handler.get_name() == _HANDLER_NAME and handler.formatter is not None:
            return handler.formatter._fmt
    return None


def ensure_logging() -> None:
    """Configure the ``headwater`` logger from settings unless it already is (the engine's edge)."""
    if not logging_configured():
        configure_logging()
