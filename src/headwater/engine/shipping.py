"""Batched shipping of one flow run's task-run states and log records to the API.

A :class:`Shipper` queues entries (the hot path: one append under a lock) and a
daemon thread sends them every ``interval`` seconds; :class:`ApiLogHandler` is
the ``logging.Handler`` that feeds it. What is reported, and when, is decided
in ``reporting.py``; the run's heartbeat is ``heartbeat.py``. The engine does
not import the client: the API object is anything shaped like :class:`RunApi`
(``headwater.client.Client`` is).
"""

from __future__ import annotations

import datetime
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from headwater.engine.context import current

logger = logging.getLogger("headwater.reporting")

#: Log records kept while the API can't be reached; later ones are counted and dropped.
MAX_PENDING_LOGS = 20_000
#: Task-run updates per request.
TASK_BATCH = 1000
#: Log records per request (``server.max_log_batch``'s default); requests are also kept
#: under ``headwater.schemas.logs.MAX_BATCH_BYTES`` of JSON.
LOG_BATCH = 1000
#: The API's field limits (``headwater.schemas``): longer values are cut.
MAX_MESSAGE, MAX_STATE_MESSAGE, MAX_NAME, MAX_SLUG = 100_000, 10_000, 200, 500

SENT, RETRY, DROPPED = "sent", "retry", "dropped"

#: (slug, state name, message, attempts or None to count Running entries, started, finished).
TaskEntry = tuple[str, str, "str | None", "int | None", "float | None", "float | None"]


class RunApi(Protocol):
    """The API calls a flow run's reporting makes (``headwater.client.Client`` has them)."""

    def set_flow_run_state(
        self, flow_run_id: str, state: Any, version: int | None = None, message: str | None = None
    ) -> Any: ...

    def get_flow_run(self, flow_run_id: str) -> Any: ...

    def heartbeat_flow_run(self, flow_run_id: str) -> Any: ...

    def set_task_run_states(self, flow_run_id: str, updates: Iterable[Mapping[str, Any]]) -> Any: ...

    def write_logs(
        self, flow_run_id: str, records: Iterable[Mapping[str, Any]], *, batch_id: str | None = None
    ) -> int: ...

    def close(self) -> None: ...


def refused(exc: BaseException) -> bool:
    """Whether the API refused the request (a 4xx): sending it again would not help."""
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500


def utc(timestamp: float | None) -> datetime.datetime | None:
    return None if timestamp is None else datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 15] + " …[truncated]"


def level_name(levelno: int) -> str:
    """The API's level for a record's level number (custom levels round down)."""
    for threshold, name in ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO")):
        if levelno >= threshold:
            return name
    return "DEBUG"


class Shipper:
    """Sends one flow run's queued task-run states and log records in batches.

    Args:
        api: the API client.
        flow_run_id: the run.
        interval: seconds between sends by the background thread.
        name: the thread's name.

    A send that fails for want of the API is kept for the next one; one the API
    refuses (4xx) is dropped. Failures go to stderr and the ``headwater.reporting``
    logger, never to the caller. Log records go in batches of at most ``LOG_BATCH``
    records and ``MAX_BATCH_BYTES`` of JSON, each with an id it keeps when it is sent
    again, so the server stores a batch once however often its answer was lost.
    """

    def __init__(self, api: RunApi, flow_run_id: str, interval: float, name: str = "headwater-shipper") -> None:
        self.api = api
        self.flow_run_id = flow_run_id
        self.interval = interval
        self._lock = threading.Lock()  # guards the queues: held only to append or swap
        self._send_lock = threading.Lock()  # one send at a time (the thread, a final flush)
        self._tasks: list[TaskEntry] = []
        self._logs: list[dict[str, Any]] = []
        self._dropped = 0
        self._unsent_tasks: dict[str, dict[str, Any]] = {}
        self._unsent_logs: list[tuple[str, list[dict[str, Any]]]] = []  # (batch id, records)
        self._attempts: dict[str, int] = {}
        self._failing = False
        self._unreachable = False  # the last send failed for want of an answer (not a refusal or a 5xx)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def add_task(self, entry: TaskEntry) -> None:
        """Queue a task-run state (cheap: called by the engine for every state change)."""
        with self._lock:
            self._tasks.append(entry)

    def add_log(self, record: dict[str, Any]) -> None:
        """Queue a log record (``timestamp`` as ``time.time()`` seconds)."""
        with self._lock:
            if len(self._logs) < MAX_PENDING_LOGS:
                self._logs.append(record)
            else:
                self._dropped += 1

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and send what is left."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> bool:
        """Send everything queued now; True when nothing is left unsent."""
        with self._send_lock:
            with self._lock:
                tasks, self._tasks = self._tasks, []
                logs, self._logs = self._logs, []
                dropped, self._dropped = self._dropped, 0
            if dropped:
                logs.append(_dropped_record(dropped))
            ok = self._send_tasks(tasks)
            # the API just could not be reached (after the client's retries): the logs wait for the next flush
            return self._send_logs(logs, send=ok or not self._unreachable) and ok

    def _send_tasks(self, entries: list[TaskEntry]) -> bool:
        updates = self._unsent_tasks
        self._unsent_tasks = {}
        for slug, state, message, attempts, started, finished in entries:
            if attempts is None:  # Running counts an attempt; Retrying keeps the count
                attempts = self._attempts[slug] = self._attempts.get(slug, 0) + (state == "Running")
            updates[slug] = {
                "task_slug": cut(slug, MAX_SLUG),
                "state": state,
                "message": cut(message, MAX_STATE_MESSAGE),
                "attempts": attempts,
                "start_time": utc(started),
                "end_time": utc(finished),
            }
        rows = list(updates.values())
        for start in range(0, len(rows), TASK_BATCH):
            if self._send("task-run states", self.api.set_task_run_states, rows[start : start + TASK_BATCH]) == RETRY:
                self._unsent_tasks = {row["task_slug"]: row for row in rows[start:]}
                return False
        return True

    def _send_logs(self, records: list[dict[str, Any]], send: bool = True) -> bool:
        from headwater.schemas.logs import log_batches

        for record in records:
            if isinstance(record["timestamp"], float):
                record["timestamp"] = utc(record["timestamp"])
        batches = self._unsent_logs + [(uuid.uuid4().hex, batch) for batch in log_batches(records, LOG_BATCH)]
        self._unsent_logs = []
        for done, (batch_id, batch) in enumerate(batches):
            if not send or self._send("log records", self.api.write_logs, batch, batch_id=batch_id) == RETRY:
                self._unsent_logs = _newest(batches[done:], MAX_PENDING_LOGS)
                return False
        return True

    def _send(self, what: str, call: Any, payload: list[dict[str, Any]], **kwargs: Any) -> str:
        """SENT, RETRY (the API could not be reached: keep it) or DROPPED (the API refused it)."""
        try:
            call(self.flow_run_id, payload, **kwargs)
        except Exception as exc:
            self._unreachable = isinstance(exc, ConnectionError)  # the client's ApiConnectionError is one
            if refused(exc):
                warn(f"the API refused {len(payload)} {what} of flow run {self.flow_run_id}; dropped: {exc}")
                return DROPPED
            if not self._failing:
                self._failing = True
                warn(f"can't send {what} of flow run {self.flow_run_id} (kept, will retry): {exc}")
            return RETRY
        self._unreachable = False
        if self._failing:
            self._failing = False
            warn(f"sending {what} of flow run {self.flow_run_id} works again")
        return SENT


def _newest(batches: list[tuple[str, list[dict[str, Any]]]], limit: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """The newest whole batches holding at most ``limit`` records in all (what is kept while the API is away)."""
    kept: list[tuple[str, list[dict[str, Any]]]] = []
    count = 0
    for batch in reversed(batches):
        count += len(batch[1])
        if count > limit:
            break
        kept.append(batch)
    return kept[::-1]


def _dropped_record(count: int) -> dict[str, Any]:
    return {
        "timestamp": time.time(),
        "level": "WARNING",
        "message": f"{count} log record(s) of this run were dropped: the API could not be reached for a while",
        "name": logger.name,
        "task_slug": None,
    }


def warn(message: str) -> None:
    """To stderr and the reporting logger (whose records from the shipping threads are not shipped)."""
    try:
        print(f"headwater: {message}", file=sys.stderr, flush=True)
        logger.warning("%s", message)
    except Exception:  # reporting must never take the run down
        pass


class ApiLogHandler(logging.Handler):
    """Queues log records of one flow run on a :class:`Shipper`; never raises.

    Shipped: records of the ``headwater`` loggers, warnings and errors of any
    logger, and records of any logger emitted while one of this run's tasks runs
    (user code's own loggers). With ``only_tasks`` (worker processes), only the
    last. So the reporting's own HTTP calls (``httpx`` INFO records) never feed
    back into the run log.

    Args:
        shipper: where records go.
        flow_run_id: the run whose task records are shipped.
        only_tasks: ship only records emitted inside this run's tasks.
    """

    def __init__(self, shipper: Shipper, flow_run_id: str, only_tasks: bool = False) -> None:
        super().__init__(logging.NOTSET)
        self.shipper = shipper
        self.flow_run_id = flow_run_id
        self.only_tasks = only_tasks
        self._formatter = logging.Formatter()
        self._last: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record is self._last:  # seen on the headwater logger, then again on the root
                return
            self._last = record
            task_run = current()
            if task_run is not None and task_run.flow_run.flow_run_id == self.flow_run_id:
                slug = task_run.task.slug
            elif self.only_tasks or not (
                record.levelno >= logging.WARNING or record.name == "headwater" or record.name.startswith("headwater.")
            ):
                return
            else:
                slug = None
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{self._formatter.formatException(record.exc_info)}"
            self.shipper.add_log(
                {
                    "timestamp": record.created,
                    "level": level_name(record.levelno),
                    "message": cut(message, MAX_MESSAGE),
                    "name": cut(record.name, MAX_NAME),
                    "task_slug": cut(slug, MAX_SLUG),
                }
            )
        except Exception:  # a record that can't be formatted must not fail the task that logged it
            pass


def attach(handler: ApiLogHandler, level: int) -> tuple[list[logging.Logger], int | None]:
    """Add ``handler`` to the ``headwater`` and root loggers; lower the root's level to ``level``.

    The ``headwater`` logger does not propagate (it has its own console handler),
    so both need it. The root's level is lowered so user code's
    ``logging.getLogger(__name__).info(...)`` inside tasks is emitted at all.
    Returns what :func:`detach` needs to undo it.
    """
    loggers = [logging.getLogger("headwater"), logging.getLogger()]
    for each in loggers:
        each.addHandler(handler)
    root = logging.getLogger()
    old = root.level
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
        return loggers, old
    return loggers, None


def detach(handler: ApiLogHandler, attached: tuple[list[logging.Logger], int | None]) -> None:
    loggers, old_root_level = attached
    for each in loggers:
        each.removeHandler(handler)
    if old_root_level is not None:
        logging.getLogger().setLevel(old_root_level)
