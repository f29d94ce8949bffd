"""Tells waiting claims that work may be due (a run created, put back, rescheduled), here and on peers.

A notice carries the label sets of the runs it is about where the caller knows them
(``notify([["gpu"], []])``), so only the claims those runs fit wake; a plain
``notify()`` wakes every waiting claim. The waiting itself is ``waiter.py``'s (one
shared waiter per server process); this module carries notices to it, and between
server processes.

Several server processes may share one database (replicas behind a load balancer):
a run created through one must wake a claim long-polling on another. Each process's
notifier therefore also tells its peers, through a channel on the database itself:

- PostgreSQL: ``LISTEN``/``NOTIFY`` on the channel ``headwater_work``. A listener
  thread holds its own connection; a sender thread sends ``pg_notify`` on another,
  so the request that called :meth:`WorkNotifier.notify` does not wait for the
  round trip. Notices sent while one is under way are coalesced into one; its payload
  is the sender's token and the label sets (JSON), or the token alone — "wake every
  claim" — when they would not fit PostgreSQL's 8,000-byte payload.
- SQLite: the other processes are on this machine, so a 16-byte file beside the
  database (``<database>-notify``) is the change counter: :meth:`notify` writes a new
  value into it, and a thread in every process reads it every 20 ms (a ``pread`` of 16
  bytes; nothing else runs unless it changed). It carries no labels: a change wakes
  every claim of the other processes. (``PRAGMA data_version`` would wake claimers on
  *every* commit, a claim's own included — a claim updates its agent's ``last_seen``.)

A peer's notice only wakes local claims, which then claim through the database as
always: a run is still claimed once (``server/models/work.py``), and a notice lost
(e.g. while the listener reconnects, which also wakes every claim) is found by the
sweep (``sweep.py``) within its interval.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

logger = logging.getLogger("headwater.server.notifier")

#: The PostgreSQL notification channel (notifications are per database, so one name serves all).
PG_CHANNEL = "headwater_work"
#: How often the SQLite change counter is read.
POLL_SECONDS = 0.02
#: Longest payload sent with labels (PostgreSQL refuses 8,000 bytes and more); longer: wake all.
MAX_PAYLOAD = 7900

#: Label sets of runs that may be claimable now; None: unknown runs (wake every claim).
Change = frozenset[frozenset[str]] | None
#: What a notice is handed to: the shared waiter's ``wake``.
Wake = Callable[[Change], None]


class PeerChannel:
    """Tells other server processes on the same database that work may be due, and hears them."""

    # -- hooks for subclasses ------------------------------------------------------

    def start(self, wake: Wake) -> None:
        """Begin listening; call ``wake`` (from any thread) when a peer signals."""

    def signal(self, change: Change) -> None:
        """Tell the peers; must be cheap, it is called on the request path."""

    def stop(self) -> None:
        """Stop listening and release what ``start`` took."""


class WorkNotifier:
    """Notices for long-polling claims: this process's, and (with a channel) its peers'."""

    def __init__(self, wake: Wake, peers: PeerChannel | None = None) -> None:
        self._wake = wake
        self._peers = peers

    def start(self) -> None:
        """Start hearing peers (a no-op without a channel)."""
        if self._peers is not None:
            self._peers.start(self._wake)

    def stop(self) -> None:
        """Stop hearing peers."""
        if self._peers is not None:
            self._peers.stop()

    def notify(self, labels: Iterable[Iterable[str]] | None = None) -> None:
        """Runs with these label sets may be claimable now (default: unknown runs, wake every claim).

        Wakes the waiting claims those runs fit, here and on peers; callable from any thread.
        """
        change: Change = None if labels is None else frozenset(frozenset(one) for one in labels)
        self._wake(change)
        if self._peers is not None:
            self._peers.signal(change)


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

    def start(self, wake: Wake) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self._mode)
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(self._fd, wake), name="headwater-notify", daemon=True)
        self._thread.start()

    def signal(self, change: Change) -> None:
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

    def _poll(self, fd: int, wake: Wake) -> None:
        last = os.pread(fd, 16, 0)
        while not self._stop.wait(self._interval):
            try:
                value = os.pread(fd, 16, 0)
            except OSError:
                return  # closed by stop()
            if value != last:
                last = value
                if value[:8] != self._token:
                    wake(None)


class PostgresChannel(PeerChannel):
    """``LISTEN``/``NOTIFY`` on :data:`PG_CHANNEL`; the payload names the sender (a process skips its own)."""

    def __init__(self, engine: Engine, reconnect_seconds: float = 1.0) -> None:
        self._engine = engine
        self._reconnect = reconnect_seconds
        self._token = uuid.uuid4().hex
        self._pending = threading.Event()
        self._lock = threading.Lock()
        self._changes: set[frozenset[str]] | None = set()  # what the next notice says; None: wake all
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, wake: Wake) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._listen, args=(wake,), name="headwater-listen", daemon=True),
            threading.Thread(target=self._send, name="headwater-notify", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def signal(self, change: Change) -> None:
        with self._lock:
            if change is None:
                self._changes = None
            elif self._changes is not None:
                self._changes |= change
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

    def _listen(self, wake: Wake) -> None:
        while not self._stop.is_set():
            connection = None
            try:
                connection = self._connect()
                connection.execute(f"LISTEN {PG_CHANNEL}")
                wake(None)  # a notice may have been missed while not listening
                while not self._stop.is_set():
                    for notice in connection.notifies(timeout=0.5):
                        token, change = parse_payload(notice.payload)
                        if token != self._token:
                            wake(change)
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
            with self._lock:
                changes, self._changes = self._changes, set()
            payload = make_payload(self._token, changes)
            for attempt in (1, 2):
                try:
                    if connection is None:
                        connection = self._connect()
                    connection.execute("SELECT pg_notify(%s, %s)", (PG_CHANNEL, payload))
                    break
                except Exception as exc:
                    if connection is not None:
                        connection.close()
                        connection = None
                    if attempt == 2:
                        logger.warning("can't tell other server processes about new work (%s); their sweep "
                                       "finds it", exc)  # fmt: skip
        if connection is not None:
            connection.close()


def make_payload(token: str, changes: Iterable[frozenset[str]] | None) -> str:
    """A notice's payload: ``<token>`` alone (wake every claim), or ``<token> <JSON label sets>``."""
    if changes is None:
        return token
    payload = token + " " + json.dumps(sorted(sorted(labels) for labels in changes), separators=(",", ":"))
    return payload if len(payload.encode()) <= MAX_PAYLOAD else token


def parse_payload(payload: str) -> tuple[str, Change]:
    """The sender's token and the label sets of a notice's payload (None: wake every claim)."""
    token, _, rest = payload.partition(" ")
    if not rest:
        return token, None
    try:
        return token, frozenset(frozenset(str(label) for label in labels) for labels in json.loads(rest))
    except (ValueError, TypeError):  # not ours, or from a newer version: wake every claim
        return token, None
