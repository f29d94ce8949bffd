"""The safety net under the notices: finds runs that became claimable without a notice reaching us.

Waiting claims run no query until a notice wakes them (``waiter.py``), and a notice from
another server process can be lost (a ``pg_notify`` that failed, a database that dropped
the listener). Instead of every waiting claim checking again every few seconds, one thread
per server process reads, every :data:`SWEEP_SECONDS`, the labels of the Scheduled runs
that changed or became due since its last look (with a margin for commits that took a
while and clocks a little apart), and wakes the waiting claims those runs fit. It costs
one query per interval, however many claims wait, and none while no claim has been made.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.engine import Engine

from headwater.core.run_states import FlowRunState
from headwater.server.database.orm import FlowRunRow
from headwater.server.models.common import utcnow

logger = logging.getLogger("headwater.server.sweep")

#: Seconds between two sweeps: the most a lost notice delays a hand-off.
SWEEP_SECONDS = 5.0
#: Most runs one sweep reads; with more, it wakes every waiting claim.
MAX_RUNS = 2000

_RUNS = cast(Table, FlowRunRow.__table__)
_CHANGED = (
    select(_RUNS.c.labels)
    .where(
        _RUNS.c.state == FlowRunState.SCHEDULED,
        _RUNS.c.scheduled_start_time <= bindparam("p_now"),
        or_(_RUNS.c.updated >= bindparam("p_since"), _RUNS.c.scheduled_start_time >= bindparam("p_since")),
    )
    .limit(MAX_RUNS + 1)
)


def changed_labels(engine: Engine, since: datetime.datetime, now: datetime.datetime) -> set[frozenset[str]] | None:
    """The label sets of the due Scheduled runs changed or due since ``since``; None when there are too many."""
    with engine.connect() as connection:
        rows: list[Any] = list(connection.execute(_CHANGED, {"p_now": now, "p_since": since}).scalars())
    if len(rows) > MAX_RUNS:
        return None
    return {frozenset(labels or ()) for labels in rows}


class ChangeSweep:
    """Calls ``wake`` with what :func:`changed_labels` finds, every ``interval`` seconds, in a daemon thread.

    Args:
        engine: the database.
        wake: the shared waiter's ``wake`` (label sets, or None for all).
        active: whether any claim was made lately (no sweep otherwise).
        interval: seconds between sweeps.
    """

    def __init__(
        self,
        engine: Engine,
        wake: Callable[[Iterable[Iterable[str]] | None], None],
        active: Callable[[], bool],
        interval: float = SWEEP_SECONDS,
    ) -> None:
        self._engine = engine
        self._wake = wake
        self._active = active
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="headwater-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        margin = datetime.timedelta(seconds=self._interval)
        last = utcnow()
        while not self._stop.wait(self._interval):
            now = utcnow()
            if not self._active():
                last = now
                continue
            try:
                found = changed_labels(self._engine, last - margin, now)
            except Exception as exc:  # the database is away: look again next time, from the same moment
                logger.warning("looking for runs that became claimable failed (%s); looking again in %gs",
                               exc, self._interval)  # fmt: skip
                continue
            last = now
            if found is None or found:
                self._wake(found)
