"""Connecting to the database: SQLite (the embedded default) or PostgreSQL, by URL.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE``: writers queue for the one write lock instead of failing
with "database is locked" when a read snapshot goes stale, which is what makes
the claim safe under concurrent agents. PostgreSQL uses ``FOR UPDATE SKIP
LOCKED`` in the claim instead (``server/models/work.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError


class DatabaseError(RuntimeError):
    """The database can't be used; the message names it and the fix."""


def database_url(url: str | None, home: Path) -> str:
    """The SQLAlchemy URL for ``url`` (default: a SQLite file in ``home``)."""
    if url is None:
        return f"sqlite:///{home / 'headwater.db'}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


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


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``, checked by connecting once.

    Raises:
        DatabaseError: the URL is malformed, the SQLite file can't be opened for
            writing, or the PostgreSQL server does not answer.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(
            f"database URL {url!r} is not a URL: use sqlite:///path/to/file.db or postgresql://user@host/db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:":
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
        engine = create_engine(
            url, pool_size=20, max_overflow=40, pool_pre_ping=True, connect_args={"connect_timeout": 5}
        )
    else:
        raise DatabaseError(
            f"database {describe(url)}: headwater supports SQLite (sqlite:///file.db) and PostgreSQL "
            "(postgresql://user@host:port/db)"
        )
    check_writable(engine)
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
