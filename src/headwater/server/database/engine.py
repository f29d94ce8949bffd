"""Connecting to the database: SQLite (the embedded default) or PostgreSQL, by URL.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE``: writers queue for the one write lock instead of failing
with "database is locked" when a read snapshot goes stale, which is what makes
the claim safe under concurrent agents. PostgreSQL uses ``FOR UPDATE SKIP
LOCKED`` in the claim instead (``server/models/work.py``), and every statement
runs under ``statement_timeout`` (the ``server.statement_timeout`` setting), so a
query can't run on after its client has gone.

``database_trouble`` tells a full disk or a cancelled statement from other
database errors (``app.py`` answers them 503); ``FullWatch`` remembers that the
database said it is full until a write commits again (``api/health.py`` reports it).
"""

from __future__ import annotations

import sqlite3
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError


class DatabaseError(RuntimeError):
    """The database can't be used; the message names it and the fix."""


#: What a valid database URL looks like, for messages.
URL_FORMS = "sqlite:///path/to/file.db (three slashes, then the path) or postgresql://user@host:port/db"


def database_url(url: str | None, home: Path) -> str:
    """The SQLAlchemy URL for ``url`` (default: a SQLite file in ``home``).

    Raises:
        DatabaseError: ``url`` is not a database URL headwater can serve from (see ``check_url``).
    """
    if url is None:
        return f"sqlite:///{home / 'headwater.db'}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    check_url(url)
    return url


def check_url(url: str) -> None:
    """Refuse a URL that is malformed, of another database, or in memory, saying what a good one looks like.

    An in-memory SQLite database lives as long as one connection, and the server
    opens many (and recovery, claims and the notifier each their own), so every
    one would see an empty database of its own: the server needs a file.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"database URL {url!r} is not a URL: use {URL_FORMS}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.host or parsed.username or parsed.port:
            guess = url.split("://", 1)[1]
            raise DatabaseError(
                f"database URL {url!r} is not a SQLite URL headwater can use: a SQLite URL has three slashes and "
                f"then the file's path, e.g. sqlite:///{guess} (relative) or sqlite:////var/lib/{guess} (absolute); "
                "PostgreSQL is postgresql://user@host:port/db"
            )
        memory = parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
        if memory or (parsed.database or "").startswith("file::memory:"):
            raise DatabaseError(
                f"database URL {url!r} is an in-memory SQLite database: it lasts only as long as one connection, "
                "but a server's database must outlive every connection (and the server itself); use a file, "
                "e.g. sqlite:///headwater.db"
            )
    elif backend == "postgresql":
        if not parsed.database:
            raise DatabaseError(f"database URL {describe(url)} names no database: use {URL_FORMS}")
    else:
        raise DatabaseError(f"database {describe(url)}: headwater supports SQLite and PostgreSQL: use {URL_FORMS}")


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below opens transactions
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str, statement_timeout: float = 30.0) -> Engine:
    """An engine for ``url``, checked by connecting once.

    Args:
        url: a SQLAlchemy URL (``database_url`` makes one).
        statement_timeout: seconds PostgreSQL lets one statement run before it cancels it (0: no limit).

    Raises:
        DatabaseError: the URL is malformed, the SQLite file can't be opened for
            writing, or the PostgreSQL server does not answer.
    """
    check_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        folder = Path(path).expanduser().resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"can't create the folder of SQLite database {path}: {exc}") from exc
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=40
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif parsed.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {"connect_timeout": 5}
        if statement_timeout > 0:
            connect_args["options"] = f"-c statement_timeout={max(int(statement_timeout * 1000), 1)}"
        engine = create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True, connect_args=connect_args)
    check_writable(engine)
    _WATCHES[engine] = FullWatch(engine)
    return engine


def check_writable(engine: Engine) -> None:
    """Connect and write once (in a transaction that is rolled back), or raise DatabaseError."""
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(text("CREATE TABLE IF NOT EXISTS _headwater_probe (x INTEGER)"))
                conn.execute(text("DROP TABLE _headwater_probe"))
                conn.commit()
            else:
                conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if engine.dialect.name == "sqlite":
            raise DatabaseError(
                f"can't write SQLite database {engine.url.database}: {reason}; check the file and its "
                "folder are writable, or pass --database with another path"
            ) from None
        raise DatabaseError(
            f"PostgreSQL database {describe(str(engine.url))} does not answer: {reason}; is the server "
            "running and the URL right?"
        ) from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database {describe(str(engine.url))} can't be used: {exc}") from None


# -- a full disk, a cancelled statement ---------------------------------------------

#: SQLSTATEs of PostgreSQL: disk_full, and query_canceled (what statement_timeout raises).
_PG_DISK_FULL = "53100"
_PG_QUERY_CANCELED = "57014"


def database_trouble(exc: BaseException) -> tuple[str, str] | None:
    """``("full" | "cancelled" | "busy", the database's reason)`` for an error that is not the request's fault.

    None for any other error. ``exc`` is a SQLAlchemy error (its ``orig`` the
    driver's) or the driver's own.
    """
    orig = getattr(exc, "orig", None) or exc
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == _PG_DISK_FULL:
        return "full", reason
    if sqlstate == _PG_QUERY_CANCELED:
        return "cancelled", reason
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "database or disk is full" in reason:
            return "full", reason
        if code == sqlite3.SQLITE_BUSY or "database is locked" in reason:
            return "busy", reason
    return None


class FullWatch:
    """Whether the database last said it is full; cleared when a write commits again.

    The API's error handler sets ``reason``; an INSERT, UPDATE or DELETE whose
    transaction then commits clears it (the commit event fires before the commit
    itself, so a commit that fails sets it again through the handler).
    """

    def __init__(self, engine: Engine) -> None:
        self.reason: str | None = None
        event.listen(engine, "after_cursor_execute", self._executed)
        event.listen(engine, "commit", self._committed)
        event.listen(engine, "rollback", self._rolled_back)

    def _executed(self, conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
        wrote = context is not None and (context.isinsert or context.isupdate or context.isdelete)
        if self.reason is not None and wrote:
            conn.info["headwater_wrote"] = True

    def _committed(self, conn: Any) -> None:
        if conn.info.pop("headwater_wrote", False):
            self.reason = None

    def _rolled_back(self, conn: Any) -> None:
        conn.info.pop("headwater_wrote", None)


_WATCHES: weakref.WeakKeyDictionary[Engine, FullWatch] = weakref.WeakKeyDictionary()


def full_watch(engine: Engine) -> FullWatch:
    """The ``FullWatch`` of an engine ``create_db_engine`` made (made now for any other)."""
    watch = _WATCHES.get(engine)
    if watch is None:
        watch = _WATCHES[engine] = FullWatch(engine)
    return watch
