"""The recovery service: finds runs whose process stopped sending heartbeats.

A Submitted or Running run whose last heartbeat (or, before its first, its
submission) is older than ``heartbeat_timeout`` goes back to Scheduled, at most
``max_reschedules`` times, then to Failed — each time with a line in the run's
log saying why. A thread in the server process sweeps every ``recovery_interval``.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from headwater.config.settings import ServerSettings
from headwater.core.run_states import HELD, FlowRunState
from headwater.server.database.orm import FlowRunRow
from headwater.server.models.common import utcnow
from headwater.server.models.flow_runs import add_log
from headwater.server.models.run_states import record as record_state
from headwater.server.services.periodic import PeriodicService

logger = logging.getLogger("headwater.server.recovery")


def sweep(session: Session, timeout: float, max_reschedules: int) -> list[tuple[str, str]]:
    """Recover lost runs now; returns (run id, new state) for each one moved."""
    now = utcnow()
    cutoff = now - datetime.timedelta(seconds=timeout)
    last_sign = func.coalesce(FlowRunRow.heartbeat, FlowRunRow.submitted_at, FlowRunRow.updated)
    query = select(FlowRunRow).where(FlowRunRow.state.in_(sorted(HELD)), last_sign < cutoff)
    if session.get_bind().dialect.name == "postgresql":
        # several server processes sweep the same database: each lost run is moved by one sweep
        # only, and a heartbeat or claim that commits first takes the row out of the sweep
        # (SQLite needs none of this: its transactions begin IMMEDIATE, one writer at a time)
        query = query.with_for_update(skip_locked=True)
    lost = session.scalars(query).all()
    moved: list[tuple[str, str]] = []
    for row in lost:
        seen = row.heartbeat or row.submitted_at or row.updated
        why = (
            f"no heartbeat from the flow run's process since {seen:%Y-%m-%d %H:%M:%S} UTC "
            f"(timeout {timeout:g}s, it was {row.state} on agent {row.agent_id})"
        )
        holder = row.agent_id
        if row.state != FlowRunState.CANCELLING and row.reschedule_count < max_reschedules:
            row.reschedule_count += 1
            new_state = FlowRunState.SCHEDULED
            message = f"{why}; rescheduled ({row.reschedule_count} of {max_reschedules})"
            row.agent_id, row.submitted_at, row.heartbeat = None, None, None
            row.scheduled_start_time = now
        elif row.state == FlowRunState.CANCELLING:
            new_state, message = FlowRunState.CANCELLED, f"{why}; it was being cancelled, so it is Cancelled"
        else:
            new_state = FlowRunState.FAILED
            message = f"{why}; rescheduled {row.reschedule_count} time(s) already (the most allowed), so it Failed"
            row.end_time = now
        row.state, row.state_message = new_state, message
        record_state(session, row.id, new_state, message, now, holder)
        row.version += 1
        row.updated = now
        add_log(session, row.id, "WARNING" if new_state == FlowRunState.SCHEDULED else "ERROR", message, logger.name)
        logger.warning("flow run %s: %s", row.id, message)
        moved.append((row.id, new_state))
    session.commit()
    return moved


class RecoveryService(PeriodicService):
    """Runs :func:`sweep` every ``recovery_interval`` seconds in a daemon thread."""

    name, what, logger = "headwater-recovery", "recovery sweep", logger

    def __init__(self, sessions: Callable[[], Session], settings: ServerSettings, on_rescheduled: Callable[[], None]):
        self._sessions = sessions
        self._settings = settings
        self._on_rescheduled = on_rescheduled
        super().__init__()

    def interval(self) -> float:
        return self._settings.recovery_interval

    def run_once(self) -> None:
        with self._sessions() as session:
            moved = sweep(session, self._settings.heartbeat_timeout, self._settings.max_reschedules)
        if any(state == FlowRunState.SCHEDULED for _, state in moved):
            self._on_rescheduled()
