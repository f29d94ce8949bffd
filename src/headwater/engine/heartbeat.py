"""The heartbeat of a flow-run process, and how it learns its run was cancelled.

A :class:`RunMonitor` thread sends ``heartbeat_flow_run`` every heartbeat
interval (the server's recovery service treats a run whose heartbeats stop as
lost) and, between heartbeats, reads the run every check interval. Each answer
carries the run's current state, which is handed to a callback: the reporter
(``reporting.py``) stops the run's remaining tasks when it sees ``Cancelling``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from headwater.engine.shipping import warn

if TYPE_CHECKING:
    from headwater.engine.shipping import RunApi

logger = logging.getLogger("headwater.reporting")

#: Called with the run's state name, version and state message.
OnState = Callable[[str, int, "str | None"], None]
#: Called with the server's reason when the claim this process runs under was superseded.
OnSuperseded = Callable[[str], None]


def is_superseded(exc: BaseException) -> bool:
    """Whether the API refused a write because the claim it carried was superseded (the run was taken
    from this process: ``headwater.client.ClaimSupersededError``)."""
    return bool(getattr(exc, "claim_superseded", False))


class RunMonitor:
    """A daemon thread that heartbeats one flow run and watches its state.

    Args:
        api: the API client.
        flow_run_id: the run.
        on_state: told ``(state, version, message)`` after each answer.
        check_interval: seconds between looks at the run's state (a heartbeat is one).
        heartbeat_interval: seconds between heartbeats; None sends none (only reads).
            The first heartbeat is sent as soon as the thread starts.
        name: the thread's name.
        on_superseded: told the server's reason once a heartbeat is refused because the
            claim this process runs under was superseded (or a read shows the run under
            another claim than ``claim``); the thread then stops.
        claim: the claim this process runs under, ``<agent id>:<attempt>``, or None.
    """

    def __init__(
        self,
        api: RunApi,
        flow_run_id: str,
        on_state: OnState,
        check_interval: float,
        heartbeat_interval: float | None,
        name: str = "headwater-heartbeat",
        on_superseded: OnSuperseded | None = None,
        claim: str | None = None,
    ) -> None:
        self.api = api
        self.flow_run_id = flow_run_id
        self.on_state = on_state
        self.check_interval = check_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeats = 0
        self.on_superseded = on_superseded
        self.claim = claim
        self._stop = threading.Event()
        self._now = threading.Event()  # look_now(): beat at once
        self._looked = threading.Condition()
        self._looks = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._failing = False

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> None:
        self._thread.start()

    def look_now(self, timeout: float) -> bool:
        """Have the thread heartbeat at once and wait up to ``timeout`` s for the answer; True if it came.

        What the answer says is handled as always (a superseded claim calls ``on_superseded``).
        """
        if not self._thread.is_alive() or self._thread is threading.current_thread():
            return False
        with self._looked:
            seen = self._looks
            self._now.set()
            return self._looked.wait_for(lambda: self._looks != seen, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._now.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _superseded(self, reason: str) -> None:
        self._stop.set()
        if self.on_superseded is not None:
            try:
                self.on_superseded(reason)
            except Exception:
                logger.exception("handling the superseded claim of flow run %s failed", self.flow_run_id)

    def _loop(self) -> None:
        now = time.monotonic()
        next_beat = now if self.heartbeat_interval is not None else float("inf")
        next_check = now + self.check_interval
        while not self._stop.is_set():
            self._now.wait(max(0.0, min(next_beat, next_check) - time.monotonic()))
            if self._stop.is_set():
                return
            now = time.monotonic()
            beat = now >= next_beat or self._now.is_set()
            self._now.clear()
            if beat:
                assert self.heartbeat_interval is not None
                next_beat = now + self.heartbeat_interval
            elif now < next_check:
                continue
            next_check = now + self.check_interval
            self._look(beat)

    def _look(self, beat: bool) -> None:
        try:
            self._ask(beat)
        finally:
            with self._looked:
                self._looks += 1
                self._looked.notify_all()

    def _ask(self, beat: bool) -> None:
        try:
            if beat:
                run = self.api.heartbeat_flow_run(self.flow_run_id)
                self.heartbeats += 1
            else:
                run = self.api.get_flow_run(self.flow_run_id)
        except Exception as exc:  # the API may come back; the next look tries again
            if is_superseded(exc):
                self._superseded(str(exc))
                return
            if not self._failing:
                self._failing = True
                what = "send a heartbeat for" if beat else "read the state of"
                warn(f"can't {what} flow run {self.flow_run_id} (will keep trying): {exc}")
            return
        self._failing = False
        if self.claim is not None:
            current = f"{run.agent_id}:{getattr(run, 'attempt', 0)}" if run.agent_id else None
            if current != self.claim:
                held = f"under claim {current}" if current else "held by no agent"
                self._superseded(
                    f"flow run {self.flow_run_id} is {run.state} and {held}, not under this process's claim "
                    f"{self.claim}: it was taken from this process"
                )
                return
        try:
            self.on_state(run.state, run.version, run.state_message)
        except Exception:
            logger.exception("handling state %s of flow run %s failed", run.state, self.flow_run_id)
