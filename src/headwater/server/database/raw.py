"""Statements run on the driver's connection itself, for the hot paths (run creation).

SQLAlchemy's execution of a Core statement — the compiled-cache lookup, the execution
context, the event dispatch, the result set-up — costs several times what SQLite takes
to run a small statement (``bench/api.py``; ``docs/benchmarks.md``, run creation). A
:class:`RawStatement` is a Core statement compiled once for the engine's dialect and run on
a DBAPI cursor. Its parameters go through the bind processors of their columns' types
and its rows through the result processors — SQLAlchemy's own, so a value is stored and
read exactly as the ORM and Core store and read it (timestamps in SQLite's text form,
naive UTC, JSON as text).

:func:`raw_transaction` checks a connection out of the engine's pool and begins the way
the engine does (on SQLite ``BEGIN IMMEDIATE``: ``engine.py``), commits at the end and
rolls back on an error. A driver error comes out as SQLAlchemy's own exception class
(``IntegrityError``, ``OperationalError``, ...), so the API's handlers answer a full disk,
a locked database or a value the database refuses as they answer them elsewhere; and a
commit clears what ``FullWatch`` remembers of a full disk, as a commit through the
engine does.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler

from headwater.server.database.engine import full_watch


class RawStatement:
    """A Core statement compiled for one dialect, run on DBAPI cursors.

    Args:
        statement: the statement; an INSERT must name its columns in ``columns``.
        engine: the engine whose dialect compiles it.
        columns: for an INSERT, the columns the VALUES clause holds (the others get their
            defaults in the database, e.g. an autoincrement id).
    """

    def __init__(self, statement: ClauseElement, engine: Engine, columns: Sequence[str] | None = None) -> None:
        dialect = engine.dialect
        kwargs: dict[str, Any] = {"column_keys": list(columns)} if columns is not None else {}
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, **kwargs))
        self.sql = str(compiled)
        self.positional = bool(dialect.positional)
        #: the bind names in the order the SQL holds them (a named style takes them in any order)
        self.names: list[str] = list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        #: values the statement carries itself (e.g. the path of a JSON operator)
        self.defaults = {
            name: bind.value for name, bind in compiled.binds.items() if name in self.names and bind.value is not None
        }
        self.processors: dict[str, Any] = {}
        for name in self.names:
            bind = compiled.binds.get(name)
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect) if bind is not None else None
            if processor is not None:
                self.processors[name] = processor
        self.results: list[Any] = []
        self.keys: list[str] = []
        if isinstance(statement, Select):
            selected: list[Any] = list(cast(Any, statement.selected_columns))
            self.results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected]
            self.keys = [c.key for c in selected]

    def params(self, values: Mapping[str, Any], processors: Mapping[str, Any] | None = None) -> Any:
        """The driver's parameters for one execution (a tuple, or a dict for a named style)."""
        merged = {**self.defaults, **values} if self.defaults else values
        if processors is None:
            processors = self.processors
        if self.positional:
            return tuple(
                processors[name](merged.get(name)) if name in processors else merged.get(name) for name in self.names
            )
        return {
            name: processors[name](merged.get(name)) if name in processors else merged.get(name) for name in self.names
        }

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> None:
        cursor.execute(self.sql, self.params(values))

    def executemany(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """One statement for all ``rows``; a value the rows share (one timestamp) is converted once."""
        if rows:
            processors = {name: _remembering(process) for name, process in self.processors.items()}
            cursor.executemany(self.sql, [self.params(row, processors) for row in rows])

    def rows(self, cursor: Any, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows of a SELECT, each a dict by column key, with the columns' result processing."""
        cursor.execute(self.sql, self.params(values))
        results = self.results
        return [
            {key: (process(value) if process is not None else value)
             for key, process, value in zip(self.keys, results, row, strict=True)}
            for row in cursor.fetchall()
        ]  # fmt: skip


def _remembering(process: Any) -> Any:
    """``process`` answering again the last value's result when given the same object (for one executemany)."""
    last: list[Any] = [_NOTHING, None]

    def remembered(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, process(value)
        return last[1]

    return remembered


_NOTHING = object()


class RawStatements:
    """Statements compiled once per engine's dialect, on first use: ``statements.get(engine, "name", statement)``."""

    def __init__(self) -> None:
        # by the dialect object itself (not its id, which a later dialect may reuse)
        self._compiled: weakref.WeakKeyDictionary[Any, dict[str, RawStatement]] = weakref.WeakKeyDictionary()

    def get(
        self, engine: Engine, name: str, statement: ClauseElement, columns: Sequence[str] | None = None
    ) -> RawStatement:
        known = self._compiled.get(engine.dialect)
        if known is None:
            known = self._compiled[engine.dialect] = {}
        found = known.get(name)
        if found is None:
            found = known[name] = RawStatement(statement, engine, columns)
        return found


@contextmanager
def raw_transaction(engine: Engine) -> Iterator[Any]:
    """A DBAPI cursor in a write transaction of its own: committed at the end, rolled back on an error.

    Raises:
        sqlalchemy.exc.DBAPIError: (its subclass for the driver's error) whatever the driver raised.
    """
    dbapi = engine.dialect.loaded_dbapi
    proxied = engine.raw_connection()
    try:
        connection: Any = proxied.driver_connection
        cursor = connection.cursor()
        try:
            if engine.dialect.name == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")  # as every transaction of the engine (engine.py)
            yield cursor
            connection.commit()
        except dbapi.Error as exc:
            connection.rollback()
            raise sa_exc.DBAPIError.instance(
                "(a statement of a raw transaction)", None, exc, dbapi.Error, dialect=engine.dialect
            ) from exc
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
    finally:
        proxied.close()
    watch = full_watch(engine)
    if watch.reason is not None:
        watch.reason = None  # a transaction that wrote was committed: the disk has room again
