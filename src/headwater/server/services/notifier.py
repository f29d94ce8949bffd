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

Releases (a stopping agent ending its waiting claim, ``POST /work/claim/release``) travel the
same way on PostgreSQL, as notices of their own (``<token> release:<JSON [agent id, claim id]
pairs>``), since the claim may wait on another process than the one the release reached.
The SQLite channel carries none: there a release is heard by the process it reached only.

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
#: What a release is handed to: the shared waiter's ``release`` (agent id, claim id).
Release = Callable[[str, str], None]
#: Marks a release notice's payload (after the token).
RELEASE_MARK = "release:"


class PeerChannel:
    """Tells other server processes on the same database that work may be due, and hears them."""

    # -- hooks for subclasses ------------------------------------------------------

    def start(self, wake: Wake, release: Release | None = None) -> None:
        """Begin listening; call ``wake`` (``release``) from any thread when a peer signals (releases)."""

    def signal(self, change: Change) -> None:
        """Tell the peers; must be cheap, it is called on the request path."""

    def signal_release(self, agent_id: str, claim_id: str) -> None:
        """Tell the peers a claim is released (a channel that can't: nothing)."""

    def stop(self) -> None:
        """Stop listening and release what ``start`` took."""


class WorkNotifier:
    """Notices for long-polling claims: this process's, and (with a channel) its peers'."""

    def __init__(self, wake: Wake, peers: PeerChannel | None = None, release: Release | None = None) -> None:
        self._wake = wake
        self._peers = peers
        self._release = release

    def start(self) -> None:
        """Start hearing peers (a no-op without a channel)."""
        if self._peers is not None:
            self._peers.start(self._wake, self._release)

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

    def release(self, agent_id: str, claim_id: str) -> None:
        """End this claim's wait, here and on peers (its agent is stopping); callable from any thread."""
        if self._release is not None:
            self._release(agent_id, claim_id)
        if self._peers is not None:
            self._peers.signal_release(agent_id, claim_id)


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

    def start(self, wake: Wake, release: Release | None = None) -> None:
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
        self._has_change = False  # a change is waiting to be sent
        self._releases: list[tuple[str, str]] = []  # releases waiting to be sent
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, wake: Wake, release: Release | None = None) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._listen, args=(wake, release), name="headwater-listen", daemon=True),
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
            self._has_change = True
        self._pending.set()

    def signal_release(self, agent_id: str, claim_id: str) -> None:
        with self._lock:
            self._releases.append((agent_id, claim_id))
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

    def _listen(self, wake: Wake, release: Release | None) -> None:
        while not self._stop.is_set():
            connection = None
            try:
                connection = self._connect()
                connection.execute(f"LISTEN {PG_CHANNEL}")
                wake(None)  # a notice may have been missed while not listening
                while not self._stop.is_set():
                    for notice in connection.notifies(timeout=0.5):
                        released = parse_release(notice.payload)
                        if released is not None:
                            token, claims = released
                            if token != self._token and release is not None:
                                for agent_id, claim_id in claims:
                                    release(agent_id, claim_id)
                            continue
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
                has_change, self._has_change = self._has_change, False
                releases, self._releases = self._releases, []
            payloads = make_release_payloads(self._token, releases)
            if has_change:
                payloads.insert(0, make_payload(self._token, changes))
            for payload in payloads:
                connection = self._notify(connection, payload)
        if connection is not None:
            connection.close()

    def _notify(self, connection: Any, payload: str) -> Any:
        """Send one notice (a second try on a fresh connection); returns the connection to use next."""
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
                    logger.warning("can't tell other server processes about new work or a release (%s); their "
                                   "sweep finds new work, a released claim ends with its wait", exc)  # fmt: skip
        return connection


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


def make_release_payloads(token: str, releases: list[tuple[str, str]]) -> list[str]:
    """Release notices' payloads, each ``<token> release:<JSON [agent id, claim id] pairs>`` within MAX_PAYLOAD."""
    payloads: list[str] = []
    batch: list[tuple[str, str]] = []
    for release in releases:
        candidate = _release_payload(token, [*batch, release])
        if batch and len(candidate.encode()) > MAX_PAYLOAD:
            payloads.append(_release_payload(token, batch))
            batch = [release]
        else:
            batch.append(release)
    if batch:
        payloads.append(_release_payload(token, batch))
    return payloads


def _release_payload(token: str, releases: list[tuple[str, str]]) -> str:
    return f"{token} {RELEASE_MARK}" + json.dumps([list(pair) for pair in releases], separators=(",", ":"))


def parse_release(payload: str) -> tuple[str, list[tuple[str, str]]] | None:
    """The sender's token and the claims a release notice names; None for any other notice."""
    token, _, rest = payload.partition(" ")
    if not rest.startswith(RELEASE_MARK):
        return None
    try:
        pairs = json.loads(rest[len(RELEASE_MARK) :])
        return token, [(str(agent_id), str(claim_id)) for agent_id, claim_id in pairs]
    except (ValueError, TypeError):  # malformed: no release (the claims end with their waits)
        return token, []
