"""Wakes waiting claim calls as soon as work may be due (a run created, put back, rescheduled).

A generation counter avoids lost wake-ups: a claimer reads the generation,
looks for work, and waits only if the generation has not moved since. The
waiting loop is ``server/api/work.py``'s claim route.

Several server processes may share one database (replicas behind a load
balancer): a run created through one must wake a claim long-polling on another.
Each process's notifier therefore also tells its peers, through a channel on the
database itself:

- PostgreSQL: ``LISTEN``/``NOTIFY`` on the channel ``headwater_work``. A listener
  thread holds its own connection; a sender thread sends ``pg_notify`` on another,
  so the request that called :meth:`WorkNotifier.notify` does not wait for the
  round trip (notifications sent while one is under way are coalesced into one).
- SQLite: the other processes are on this machine, so a 16-byte file beside the
  database (``<database>-notify``) is the change counter: :meth:`notify` writes a new
  value into it, and a thread in every process reads it every 20 ms. (``PRAGMA
  data_version`` would wake claimers on *every* commit, a claim's own included —
  a claim updates its agent's ``last_seen`` — so waiters would keep waking each other.)

A peer's notice only wakes local waiters, which then claim through the database as
always: a run is still claimed once (``server/models/work.py``), and a notice lost
(e.g. while the listener reconnects) costs at most the route's recheck interval.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

logger = logging.getLogger("headwater.server.notifier")

#: The PostgreSQL notification channel (notifications are per database, so one name serves all).
PG_CHANNEL = "headwater_work"
#: How often the SQLite change counter is read.
POLL_SECONDS = 0.02


class PeerChannel:
    """Tells other server processes on the same database that work may be due, and hears them."""

    # -- hooks for subclasses ------------------------------------------------------

    def start(self, wake: Callable[[], None]) -> None:
        """Begin listening; call ``wake`` (from any thread) when a peer signals."""

    def signal(self) -> None:
        """Tell the peers; must be cheap, it is called on the request path."""

    def stop(self) -> None:
        """Stop listening and release what ``start`` took."""


class WorkNotifier:
    """Wake-ups for long-polling claims: this process's, and (with a channel) its peers'."""

    def __init__(self, peers: PeerChannel | None = None) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._peers = peers

    @property
    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        """Start hearing peers (a no-op without a channel)."""
        if self._peers is not None:
            self._peers.start(self._wake)

    def stop(self) -> None:
        """Stop hearing peers, and wake every local waiter (the server is stopping)."""
        if self._peers is not None:
            self._peers.stop()
        self._wake()

    def notify(self) -> None:
        """Something claimable may have appeared: wake every waiting claimer, here and on peers."""
        self._wake()
        if self._peers is not None:
            self._peers.signal()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification after generation ``seen``."""
        with self._condition:
            return self._condition.wait_for(lambda: self._generation != seen, timeout=max(timeout, 0.0))

    def _wake(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()


def peer_channel(engine: Engine) -> PeerChannel | None:
    """The channel for ``engine``'s database; None where no other process can share it (in-memory SQLite)."""
    if engine.dialect.name == "postgresql":
        return PostgresChannel(engine)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser().resolve()
            mode = path.stat().st_mode & 0o666 if path.exists() else 0o644
            return FileChannel(path.with_name(path.name + "-notify"), mode=mode)
    return None


class FileChannel(PeerChannel):
    """A change counter in a small file beside a SQLite database, read every :data:`POLL_SECONDS`.

    Each write is this process's random token and a counter, so every signal is a new
    value, and a process skips its own (its waiters were woken already).
    """

    def __init__(self, path: Path, interval: float = POLL_SECONDS, mode: int = 0o644) -> None:
        self.path = path
        self._mode = mode  # the database's: every process that may write it must write this too
        self._interval = interval
        self._token = uuid.uuid4().bytes[:8]
        self._counter = itertools.count(1)
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wake: Callable[[], None]) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self._mode)
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(self._fd, wake), name="headwater-notify", daemon=True)
        self._thread.start()

    def signal(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            os.pwrite(fd, self._token + next(self._counter).to_bytes(8, "big"), 0)
        except OSError as exc:  # a full disk must not fail the request that created the run
            logger.warning("can't signal other server processes through %s: %s", self.path, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _poll(self, fd: int, wake: Callable[[], None]) -> None:
        last = os.pread(fd, 16, 0)
        while not self._stop.wait(self._interval):
            try:
                value = os.pread(fd, 16, 0)
            except OSError:
                return  # closed by stop()
            if value != last:
                last = value
                if value[:8] != self._token:
                    wake()


class PostgresChannel(PeerChannel):
    """``LISTEN``/``NOTIFY`` on :data:`PG_CHANNEL`; the payload is the sender's token, so a process skips its own."""

    def __init__(self, engine: Engine, reconnect_seconds: float = 1.0) -> None:
        self._engine = engine
        self._reconnect = reconnect_seconds
        self._token = uuid.uuid4().hex
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, wake: Callable[[], None]) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._listen, args=(wake,), name="headwater-listen", daemon=True),
            threading.Thread(target=self._send, name="headwater-notify", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def signal(self) -> None:
        self._pending.set()

    def stop(self) -> None:
        self._stop.set()
        self._pending.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _connect(self) -> Any:
        """A connection of the engine's (same URL and options), out of its pool, in autocommit."""
        proxied = self._engine.raw_connection()
        connection: Any = proxied.driver_connection  # read before detach(), which forgets it
        proxied.detach()
        connection.rollback()
        connection.autocommit = True
        return connection

    def _listen(self, wake: Callable[[], None]) -> None:
        while not self._stop.is_set():
            connection = None
            try:
                connection = self._connect()
                connection.execute(f"LISTEN {PG_CHANNEL}")
                wake()  # a notice may have been missed while not listening
                while not self._stop.is_set():
                    for notice in connection.notifies(timeout=0.5):
                        if notice.payload != self._token:
                            wake()
            except Exception as exc:  # the database restarted or dropped us: listen again shortly
                if not self._stop.is_set():
                    logger.warning("listening for other server processes' work notices failed (%s); "
                                   "listening again in %gs", exc, self._reconnect)  # fmt: skip
                    self._stop.wait(self._reconnect)
            finally:
                if connection is not None:
                    connection.close()

    def _send(self) -> None:
        connection = None
        while True:
            self._pending.wait()
            if self._stop.is_set():
                break
            self._pending.clear()
            for attempt in (1, 2):
                try:
                    if connection is None:
                        connection = self._connect()
                    connection.execute("SELECT pg_notify(%s, %s)", (PG_CHANNEL, self._token))
                    break
                except Exception as exc:
                    if connection is not None:
                        connection.close()
                        connection = None
                    if attempt == 2:
                        logger.warning("can't tell other server processes about new work (%s); they find it "
                                       "on their next recheck", exc)  # fmt: skip
        if connection is not None:
            connection.close()
