"""Claims of one server process, made by one thread in batches: one transaction for all waiting.

A claim is a short write transaction. Made one per request, concurrent claimers took
turns at the write lock (SQLite) and each turn paid a transaction of its own plus the
wait for the interpreter's lock between its statements, while the other claimers'
threads sat idle: ten claimers reached a fifth of the rate of the bare health route
(``bench/api.py``, ``single_claims``). Here the route queues its claim and awaits the
answer; this thread takes every claim queued so far and makes them in order in one
transaction (``models/work.py``'s ``claim_batch``), while the event loop reads the next
requests. Exactly-once holds as before: within the batch the claims run one after
the other, and across processes the database's locks still decide.

A batch that fails as a whole (the database full, a statement cancelled) is tried again
one claim per transaction, so one claim's trouble is that claim's error only.

A claim that does not search for runs (``ClaimAsk.look`` False: an idle agent polling again,
``services/waiter.py``) is not in a hurry — its claim route waits meanwhile — so it waits up
to :data:`QUIET_DELAY` for the next batch, or for others like it: hundreds of idle agents
cost a transaction every :data:`QUIET_DELAY` seconds, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from headwater.server.errors import ApiError
from headwater.server.models.work import ClaimAsk, ClaimTaken, SeenWrites, claim_batch

logger = logging.getLogger("headwater.server.claims")

#: Most claims made in one transaction (bounds how long the write lock is held).
MAX_BATCH = 64
#: Claiming threads of one server process on PostgreSQL (on SQLite: one).
CLAIMERS_POSTGRES = 1
#: Longest a claim that does not search (``ClaimAsk.look`` False) waits for a batch, in seconds.
QUIET_DELAY = 0.5
#: Most such claims in one batch.
MAX_QUIET = 1000


@dataclass
class _Waiting:
    ask: ClaimAsk
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ClaimTaken]
    at: float = 0.0  # time.monotonic() when queued


class ClaimQueue:
    """Queue of claims waiting for the claiming threads (started on the first claim).

    One thread on SQLite (its one write lock takes writers in turn anyway); on PostgreSQL
    ``CLAIMERS_POSTGRES``, each with its own connection: a batch there mostly waits for
    round trips, and concurrent batches take different runs (``FOR UPDATE SKIP LOCKED``).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._workers = CLAIMERS_POSTGRES if engine.dialect.name == "postgresql" else 1
        self._waiting: list[_Waiting] = []
        self._quiet: list[_Waiting] = []  # claims that do not search, in order
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._seen = SeenWrites()
        self.asked = 0  # claims made (for tests and benchmarks)
        self.looked = 0  # of which searched for runs (``ClaimAsk.look``)

    async def claim(self, ask: ClaimAsk, patient: bool = False) -> ClaimTaken:
        """Make this claim in the next batch; raises its refusal (NotFound, Forbidden) or database error.

        A ``patient`` claim that does not search waits up to :data:`QUIET_DELAY` seconds for its batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ClaimTaken] = loop.create_future()
        with self._ready:
            if self._stopped:
                raise RuntimeError("the server is stopping: claim again on another server process")
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._serve, name=f"headwater-claims-{n}", daemon=True)
                    for n in range(self._workers)
                ]
                for thread in self._threads:
                    thread.start()
            if ask.look or not patient:
                self._waiting.append(_Waiting(ask, loop, future))
                self._ready.notify()
            else:
                self._quiet.append(_Waiting(ask, loop, future, time.monotonic()))
                if len(self._quiet) == 1:
                    self._ready.notify()  # a thread sleeping without a deadline sets one
        return await future

    def stop(self) -> None:
        """Finish the claims queued so far, then end the threads (a later claim starts them again)."""
        with self._ready:
            self._stopped = True
            self._ready.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=10)
        with self._ready:
            self._stopped = False

    def _serve(self) -> None:
        # Each thread keeps its connection between batches (no pool checkout, no ping before
        # each); after an error it takes a fresh one, so a connection the database dropped is
        # used for one batch at most.
        connection: Connection | None = None
        while True:
            with self._ready:
                while not self._waiting and not self._stopped:
                    if not self._quiet:
                        self._ready.wait()
                        continue
                    rest = self._quiet[0].at + QUIET_DELAY - time.monotonic()
                    if rest <= 0:
                        break
                    self._ready.wait(rest)
                if not self._waiting and not self._quiet:
                    _close(connection)
                    return
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                quiet, self._quiet = self._quiet[:MAX_QUIET], self._quiet[MAX_QUIET:]
                batch += quiet  # they ride along with the next batch, or make one together
                self.asked += len(batch)
                self.looked += sum(1 for waiting in batch if waiting.ask.look)
            try:
                connection = connection or self._connect()
                self._settle(batch, _make(connection, batch, self._seen))
                continue
            except Exception as exc:
                _close(connection)
                connection = None
                if len(batch) == 1:
                    self._settle(batch, [exc])
                    continue
                logger.debug("a batch of %d claims failed (%s); making them one by one", len(batch), exc)
            for one in batch:  # a batch failing as a whole: each claim on its own
                try:
                    connection = connection or self._connect()
                    self._settle([one], _make(connection, [one], self._seen))
                except Exception as alone:
                    _close(connection)
                    connection = None
                    self._settle([one], [alone])

    def _connect(self) -> Connection:
        connection = self._engine.connect()
        if self._engine.dialect.name == "postgresql":
            # Each statement of a batch commits on its own: the claim itself is one statement
            # there (``models/work.py``), so the batch needs no BEGIN and COMMIT round trips.
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    @staticmethod
    def _settle(batch: list[_Waiting], outcomes: list[ClaimTaken | ApiError] | list[Exception]) -> None:
        for waiting, outcome in zip(batch, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # its event loop has closed: nobody waits for this answer
                waiting.loop.call_soon_threadsafe(_resolve, waiting.future, outcome)


def _make(connection: Connection, batch: list[_Waiting], seen: SeenWrites) -> list[ClaimTaken | ApiError]:
    with connection.begin():
        return claim_batch(connection, [waiting.ask for waiting in batch], seen)


def _close(connection: Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()


def _resolve(future: asyncio.Future[ClaimTaken], outcome: ClaimTaken | BaseException) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
