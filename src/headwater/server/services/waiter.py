"""The one shared waiter of a server process: long-polling claims wait here without a thread.

A claim that found nothing awaits a future registered under its label set; nothing runs
for it until something that could match it changes. What wakes it:

- a change with the label sets of the runs it made claimable (a run created, put back,
  rescheduled; ``notifier.py`` brings the ones of other server processes too): only the
  label sets those runs fit wake (run labels L fit agent labels A when L ⊆ A, and L = ∅
  only when A = ∅). A change of unknown runs wakes every label set;
- the process's one timer, set for the earliest moment a run some label set was told
  about (``ClaimTaken.due``) becomes due;
- the sweep (``services/sweep.py``) that finds runs made claimable without a notice
  reaching this process.

A claim may also be **released**: its agent is stopping and sent ``POST /work/claim/release``
with the claim's id (:meth:`ClaimWaiters.release`), so the claim answers at once instead of
holding the stopping agent for the rest of its wait.

It also remembers, per label set, that a claim found nothing as of a stamp (the count of
wake-ups that set has had): a claim of that set made before any later wake-up may skip the
search for runs (``ClaimAsk.look``). The memory lasts :data:`EMPTY_SECONDS` at most, and
until the next due run's moment.

Everything here runs on the event loop; :meth:`ClaimWaiters.wake` may be called from any
thread. The claim route is ``server/api/work.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from headwater.schemas.common import utcnow

#: A label set as claims send it (sorted, no repeats).
Key = tuple[str, ...]
#: A claim as a release names it: its agent's id and its claim id.
ClaimKey = tuple[str, str]
#: Longest a "found nothing" memory is trusted, in seconds (bounds what an unforeseen lost change costs;
#: lost notices are the sweep's). Each memory lasts a random 50-100 % of it, so a thousand agents that
#: started together do not all search again in the same second. At 120 s, 1,000 idle agents searched
#: about 11 times a second, which was half of what they cost an idle server (``bench/agents.py``).
EMPTY_SECONDS = 600.0
#: How long a release is remembered for a claim that is not waiting yet (e.g. still searching), in seconds.
RELEASE_SECONDS = 60.0
#: Most such releases remembered (the oldest are forgotten first).
MAX_RELEASES = 10_000
#: Label sets known before idle ones are first looked for and dropped (then at twice those left).
FORGET_AT = 1024


def fits(run_labels: frozenset[str], agent_labels: frozenset[str]) -> bool:
    """The label rule: L ⊆ A, and L = ∅ only when A = ∅."""
    return run_labels <= agent_labels and (bool(run_labels) or not agent_labels)


@dataclass
class _Set:
    """One label set's waiters, wake count and "found nothing" memory."""

    labels: frozenset[str]
    woken: int = 0
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    empty_stamp: int | None = None  # the stamp a claim found nothing at
    empty_until: float = 0.0  # loop time the memory lasts until
    due: float | None = None  # loop time the next run it was told about becomes due
    touched: float = 0.0  # loop time a claim last read its stamp


class ClaimWaiters:
    """Waiting claims of this process, by label set; see the module docstring."""

    def __init__(self, empty_seconds: float = EMPTY_SECONDS) -> None:
        self._empty_seconds = empty_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._sets: dict[Key, _Set] = {}
        self._by_label: dict[str, set[Key]] = {}
        self._all_woken = 0  # the clock at the last wake of every set
        self._clock = 0
        self._dues: list[tuple[float, Key]] = []  # heap; stale entries are skipped
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = False
        self._forget_at = FORGET_AT
        self._releasing: dict[ClaimKey, asyncio.Future[None]] = {}  # waiting claims a release would end
        self._released: dict[ClaimKey, float] = {}  # releases of claims not waiting then, by loop time (oldest first)
        self.wakes = 0  # wake-ups of label sets, for tests and benchmarks

    # -- life ------------------------------------------------------------------------

    def start(self) -> None:
        """Bind to the running event loop (the server's); call from it at start-up."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._stopped = False

    def stop(self) -> None:
        """The server is stopping: every waiting claim answers now, and later ones do not wait (any thread)."""
        self._call(self._stop)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def active(self) -> bool:
        """Whether any claim came lately (any thread)."""
        return bool(self._sets)

    @property
    def waiting(self) -> int:
        """How many claims wait now."""
        return sum(len(s.waiters) for s in self._sets.values())

    # -- changes -----------------------------------------------------------------------

    def wake(self, runs: Iterable[Iterable[str]] | None = None) -> None:
        """Runs with these label sets may be claimable now (None: unknown runs); from any thread."""
        change = None if runs is None else frozenset(frozenset(labels) for labels in runs)
        self._call(self._wake, change)

    def stamp(self, key: Key) -> int:
        """The wake count of ``key``'s label set: read it before a claim, wait with it after.

        Reading it enrols the set, so a change during the claim wakes it (and makes the
        claim's "found nothing" stale).
        """
        found = self._set(key)
        found.touched = self._now()
        return max(self._all_woken, found.woken)

    def known_empty(self, key: Key) -> bool:
        """Whether a claim of ``key`` found nothing and nothing that could change that happened since."""
        found = self._sets.get(key)
        if found is None or found.empty_stamp is None:
            return False
        return found.empty_stamp == max(self._all_woken, found.woken) and self._now() < found.empty_until

    def note_empty(self, key: Key, stamp: int, due: datetime.datetime | None) -> None:
        """A claim of ``key`` that began at ``stamp`` found nothing; the next run it matches is ``due``."""
        found = self._set(key)
        now = self._now()
        found.empty_stamp, found.empty_until = stamp, now + self._empty_seconds * random.uniform(0.5, 1.0)
        if due is not None:
            at = now + max((due - utcnow()).total_seconds(), 0.0)
            found.due = at
            found.empty_until = min(found.empty_until, at)
            heapq.heappush(self._dues, (at, key))
            if self._timer_at is None or at < self._timer_at:
                self._arm(at)
        if stamp != max(self._all_woken, found.woken):  # woken while the claim looked: stale already
            found.empty_stamp = None

    async def wait(self, key: Key, since: int, timeout: float, *until: asyncio.Future[Any] | None) -> bool:
        """Wait until ``key`` is woken after ``since``, ``timeout`` seconds pass, or one of ``until`` completes.

        Returns whether it was woken (or the server is stopping).
        """
        found = self._set(key)
        if self._stopped or max(self._all_woken, found.woken) != since:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        found.waiters.add(future)
        try:
            waits: set[asyncio.Future[Any]] = {future, *(f for f in until if f is not None)}
            await asyncio.wait(waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)
            return future.done() and not future.cancelled()
        finally:
            found.waiters.discard(future)
            if not future.done():
                future.cancel()

    # -- releases ----------------------------------------------------------------------

    def release(self, agent_id: str, claim_id: str) -> None:
        """End this claim's wait now: its agent is stopping (any thread; see :meth:`releasing`)."""
        self._call(self._release_claim, (agent_id, claim_id))

    def releasing(self, agent_id: str, claim_id: str) -> asyncio.Future[None]:
        """A future completed when this claim is released (done already if it was); call :meth:`unwatch` after."""
        key = (agent_id, claim_id)
        future = self._releasing.get(key)
        if future is None:
            assert self._loop is not None
            future = self._releasing[key] = self._loop.create_future()
            if self._released.pop(key, None) is not None:
                future.set_result(None)
        return future

    def unwatch(self, agent_id: str, claim_id: str) -> None:
        """The claim has answered: a release of it no longer matters."""
        future = self._releasing.pop((agent_id, claim_id), None)
        if future is not None and not future.done():
            future.cancel()

    def _release_claim(self, key: ClaimKey) -> None:
        future = self._releasing.get(key)
        if future is not None:
            if not future.done():
                future.set_result(None)
            return
        # not waiting (yet): its request may still be on the way, or it answered already
        now = self._now()
        self._released[key] = now
        while self._released:
            oldest, at = next(iter(self._released.items()))
            if len(self._released) <= MAX_RELEASES and now - at <= RELEASE_SECONDS:
                break
            del self._released[oldest]

    # -- machinery ---------------------------------------------------------------------

    def _call(self, function: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._thread:
            function(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(function, *args)

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _set(self, key: Key) -> _Set:
        found = self._sets.get(key)
        if found is None:
            if len(self._sets) >= self._forget_at:  # before the new set joins: it is not idle
                self._forget()
                self._forget_at = max(FORGET_AT, 2 * len(self._sets))  # amortized: a scan per doubling
            found = self._sets[key] = _Set(frozenset(key), touched=self._now())
            for label in key:
                self._by_label.setdefault(label, set()).add(key)
        return found

    def _wake(self, change: frozenset[frozenset[str]] | None) -> None:
        self._clock += 1
        if change is None:
            self._all_woken = self._clock
            for found in self._sets.values():
                self._release(found)
            return
        for key in self._matching(change):
            found = self._sets[key]
            found.woken = self._clock
            self._release(found)

    def _matching(self, change: frozenset[frozenset[str]]) -> set[Key]:
        """The label sets among ours that a run with one of these label sets fits."""
        keys: set[Key] = set()
        for run_labels in change:
            if not run_labels:
                if () in self._sets:
                    keys.add(())
                continue
            some = next(iter(run_labels))
            keys.update(k for k in self._by_label.get(some, ()) if run_labels <= self._sets[k].labels)
        return keys

    def _release(self, found: _Set) -> None:
        found.empty_stamp = None
        for future in found.waiters:
            if not future.done():
                future.set_result(None)
                self.wakes += 1

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        """Wake the label sets whose next run is due now; set the timer for the next one."""
        self._timer = self._timer_at = None
        now = self._now()
        due: set[Key] = set()
        while self._dues and self._dues[0][0] <= now:
            _, key = heapq.heappop(self._dues)
            found = self._sets.get(key)
            if found is not None and found.due is not None and found.due <= now:
                found.due = None
                due.add(key)
        if due:
            self._clock += 1
            for key in due:
                self._sets[key].woken = self._clock
                self._release(self._sets[key])
        if self._dues:
            self._arm(self._dues[0][0])

    def _forget(self) -> None:
        """Drop label sets idle for a while: no waiter, no claim, no memory in force, no due run (bounds memory)."""
        now = self._now()
        idle = [
            k
            for k, s in self._sets.items()
            if not s.waiters and s.due is None and s.empty_until <= now and now - s.touched > self._empty_seconds
        ]
        for key in idle:
            del self._sets[key]
            for label in key:
                keys = self._by_label.get(label)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_label[label]

    def _stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self._wake(None)
