"""Pieces every agent uses: checking labels and environment variables, stop signals, reporting to a run.

A report sets the run's state and writes the reason into the run's own log
(so ``headwater logs RUN`` shows why), and never raises: an agent must keep
going when one run can't be updated (it was cancelled, or the server blinked).
The agent's loop is ``loop.py``; its hooks are ``base.py``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from headwater.client.errors import ApiError

if TYPE_CHECKING:
    from headwater.client import Client
    from headwater.schemas.flow_runs import FlowRun

logger = logging.getLogger("headwater.agent")


def check_env_vars(env_vars: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """Environment variables as a dict of names to strings, or to None (drop the variable).

    Raises:
        ValueError: a name is empty or holds ``=``, or a name is not a string, or a value
            is neither a string nor None.
    """
    if env_vars is None:
        return {}
    if not isinstance(env_vars, Mapping):
        raise ValueError(f"env_vars must be a mapping of names to values, not {env_vars!r}")
    bad = [
        name
        for name, value in env_vars.items()
        if not isinstance(name, str) or not name or "=" in name or not (value is None or isinstance(value, str))
    ]
    if bad:
        raise ValueError(
            f"env_vars must map names (non-empty, without '=') to string values, or to None to drop the "
            f"variable; bad: {bad!r}"
        )
    return dict(env_vars)


def log_to_run(client: Client, flow_run_id: str, level: str, message: str, claim: str | None = None) -> None:
    """Append one record from ``headwater.agent`` to the run's log (under ``claim`` when given); a failure
    is only logged here."""
    try:
        client.write_logs(flow_run_id, [{"level": level, "message": message, "name": "headwater.agent"}], claim=claim)
    except ApiError as exc:
        logger.warning("could not write to the log of flow run %s: %s", flow_run_id, exc)


def report_state(
    client: Client,
    flow_run_id: str,
    state: str,
    message: str,
    version: int | None = None,
    level: str = "ERROR",
    claim: str | None = None,
) -> bool:
    """Move the run to ``state`` with ``message`` and log the message in the run; False if the server refused.

    With ``version``, a run changed since it was read is left alone; with ``claim``
    (``<agent id>:<attempt>``), so is a run taken from that claim since.
    """
    from headwater.core.run_states import FlowRunState

    releases = state == FlowRunState.SCHEDULED  # a put-back ends the claim: its log line goes first
    if releases:
        log_to_run(client, flow_run_id, level, message, claim)
    try:
        client.set_flow_run_state(flow_run_id, state, version=version, message=message, claim=claim)
    except ApiError as exc:
        logger.warning("could not move flow run %s to %s (%s): %s", flow_run_id, state, message, exc)
        if releases:
            log_to_run(client, flow_run_id, "WARNING", f"(not put back after all: {exc})", claim)
        return False
    if not releases:
        log_to_run(client, flow_run_id, level, message, claim)
    return True


def claim_of(flow_run: FlowRun) -> str | None:
    """The claim a claimed run is under, ``<agent id>:<attempt>``; None for a run no agent holds."""
    return f"{flow_run.agent_id}:{flow_run.attempt}" if flow_run.agent_id else None


def install_stop_signals(handler: Callable[[int, Any], None]) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to ``handler`` when called in the main thread; the handlers replaced, by signal."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`install_stop_signals` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
