"""The flow-run half of ``Client``: runs, their states, heartbeats, logs, task runs, explain.

Mixed into ``client.py``'s ``Client``. Server side: ``server/api/flow_runs.py``,
``logs.py`` and ``task_runs.py``.
"""

from __future__ import annotations

import datetime
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from headwater.client.http import CLAIM_HEADER
from headwater.core.run_states import FINISHED
from headwater.schemas.flow_runs import Explain, FlowRun, FlowRunCreate, FlowRunPage
from headwater.schemas.logs import MAX_BATCH_BYTES, LogPage, LogRecord, LogRecordIn, log_batches
from headwater.schemas.retention import PruneResult
from headwater.schemas.task_runs import TaskRun, TaskRunUpdate

if TYPE_CHECKING:
    from headwater.client.http import Transport

_TASK_RUNS = TypeAdapter(list[TaskRun])

#: Records per page when reading logs, and per request when writing them.
LOG_PAGE = 1000


def segment(value: str) -> str:
    """``value`` quoted to be one path segment (an id can't reach another route)."""
    return urllib.parse.quote(str(value), safe="")


def jsonable(value: Any, what: str) -> Any:
    """``value`` with datetimes and models turned into JSON values; ValueError naming ``what`` if it can't be."""
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise ValueError(f"{what} must be JSON values (str, number, list, dict): {exc}") from None


def state_name(state: Any) -> tuple[str, str | None]:
    """``(name, message)`` of a state given as a name, a State or a State class."""
    if isinstance(state, str):
        return state, None
    if isinstance(state, type):
        return state.__name__, None
    name = getattr(state, "name", None)
    if isinstance(name, str):
        return name, getattr(state, "message", None)
    raise TypeError(f"a state is a name like 'Running' or a headwater State, not {state!r}")


def _claim(claim: str | None) -> dict[str, str] | None:
    """The header of a write made under ``claim`` (instead of the client's own), or None."""
    return {CLAIM_HEADER: claim} if claim else None


class FlowRunsMixin:
    """Flow-run methods of ``Client``; they need its transport ``_http``."""

    _http: Transport

    def create_flow_run(
        self,
        flow_id: str | None = None,
        *,
        project_name: str | None = None,
        flow_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        labels: Iterable[str] | None = None,
        idempotency_key: str | None = None,
        scheduled_start_time: datetime.datetime | None = None,
        run_name: str | None = None,
    ) -> str:
        """Schedule a run of a flow version (by id, or the latest of project + flow name); returns its id.

        ``labels`` default to the flow version's; runs are snapshotted with them.
        The same ``idempotency_key`` for the same flow version returns the run made first.
        """
        body = {
            "flow_id": flow_id,
            "project_name": project_name,
            "flow_name": flow_name,
            "parameters": jsonable(dict(parameters or {}), "parameters"),
            "labels": None if labels is None else list(labels),
            "idempotency_key": idempotency_key,
            "scheduled_start_time": jsonable(scheduled_start_time, "scheduled_start_time"),
            "run_name": run_name,
        }
        return str(self._http.request("POST", "/runs", json=body, idempotent=idempotency_key is not None)["id"])

    def create_flow_runs(self, runs: Iterable[FlowRunCreate | Mapping[str, Any]]) -> list[str]:
        """Schedule many runs in one request, all or none; returns their ids in the order given.

        Each run is a ``FlowRunCreate`` or a mapping with :meth:`create_flow_run`'s keywords
        (``flow_id``, or ``project_name`` + ``flow_name``; ``parameters``, ``labels``,
        ``idempotency_key``, ``scheduled_start_time``, ``run_name``). If one is refused — an
        unknown flow (NotFoundError), bad parameters or labels (ValidationError), parameters
        too large (TooLargeError), an archived flow (ConflictError) — none is made, and the
        error names it by its index: ``flow_runs[3]: ...``. The server takes at most
        ``server.max_run_batch`` runs per request (default 1000; more: TooLargeError).
        """
        body = []
        for index, run in enumerate(runs):
            if isinstance(run, FlowRunCreate):
                body.append(run.model_dump(mode="json", exclude_unset=True))
            elif isinstance(run, Mapping):
                body.append(jsonable(dict(run), f"flow run {index}'s values"))
            else:
                raise TypeError(
                    f"flow run {index} is {type(run).__name__}; give each run as a dict of create_flow_run's keywords "
                    "(e.g. {'flow_id': ...}) or a FlowRunCreate"
                )
        if not body:
            return []
        # a retry can't make a run twice when every run carries an idempotency key
        idempotent = all(run.get("idempotency_key") is not None for run in body)
        answer = self._http.request("POST", "/runs/batch", json={"flow_runs": body}, idempotent=idempotent)
        return [str(run["id"]) for run in answer["flow_runs"]]

    def get_flow_run(self, flow_run_id: str) -> FlowRun:
        """The run: its state (a name), state_message, labels, parameters, agent_id, version..."""
        return FlowRun.model_validate(self._http.request("GET", f"/runs/{segment(flow_run_id)}"))

    def list_flow_runs(self, **filters: Any) -> list[FlowRun]:
        """Runs matching every filter given, newest first; the filters are :meth:`list_flow_runs_page`'s."""
        return self.list_flow_runs_page(**filters).flow_runs

    def list_flow_runs_page(
        self,
        *,
        state: str | Iterable[str] | None = None,
        flow_id: str | None = None,
        flow_name: str | None = None,
        project_name: str | None = None,
        label: str | Iterable[str] | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> FlowRunPage:
        """A page of runs matching every filter given, newest first, with the total count.

        ``state`` and ``label`` take one value or several (a run must carry every
        label given); ``since``/``until`` bound the creation time.
        """
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        for key, value in (("flow_id", flow_id), ("flow_name", flow_name), ("project_name", project_name),
                           ("since", since), ("until", until)):  # fmt: skip
            if value is not None:
                params[key] = jsonable(value, key)
        for key, values in (("state", state), ("label", label)):
            if values is not None:
                params[key] = [values] if isinstance(values, str) else list(values)
        return FlowRunPage.model_validate(self._http.request("GET", "/runs", params=params))

    def set_flow_run_state(
        self,
        flow_run_id: str,
        state: Any,
        version: int | None = None,
        message: str | None = None,
        claim: str | None = None,
    ) -> FlowRun:
        """Propose a state (a name, a State or a State class); returns the run as it is now.

        ``message`` defaults to the State's message. With ``version`` (the run's
        version as last read) a run changed since is a ConflictError, as is a
        move the server's rules forbid. ``claim`` (``<agent id>:<attempt>``) is the
        claim this write acts under, instead of the client's own: the server refuses the
        write with ClaimSupersededError once the run was taken from that claim.
        """
        name, state_message = state_name(state)
        body = {"state": name, "message": message if message is not None else state_message, "version": version}
        path = f"/runs/{segment(flow_run_id)}/state"
        # with a version it is idempotent: a second try of an applied write is a 409 (``resent``)
        answer = self._http.request("POST", path, json=body, headers=_claim(claim), idempotent=version is not None)
        return FlowRun.model_validate(answer)

    def cancel_flow_run(self, flow_run_id: str) -> FlowRun:
        """Cancel: a Scheduled run becomes Cancelled, a Submitted or Running one Cancelling."""
        return FlowRun.model_validate(self._http.request("POST", f"/runs/{segment(flow_run_id)}/cancel"))

    def prune_flow_runs(self, older_than: float, *, dry_run: bool = False, max_runs: int = 10_000) -> PruneResult:
        """Delete finished runs that finished more than ``older_than`` seconds ago (``POST /runs/prune``).

        At most ``max_runs`` per call; the answer's ``remaining`` says how many are left. ConflictError
        (naming them) when an unfinished run was due before the window; ``dry_run`` only counts.
        """
        body = {"older_than": older_than, "dry_run": dry_run, "max_runs": max_runs}
        # sent again after a lost answer it deletes the rest, or nothing: safe to retry
        return PruneResult.model_validate(self._http.request("POST", "/runs/prune", json=body, idempotent=True))

    def heartbeat_flow_run(self, flow_run_id: str) -> FlowRun:
        """Tell the server the run's process is alive; the answer carries its current state."""
        answer = self._http.request("POST", f"/runs/{segment(flow_run_id)}/heartbeat", idempotent=True)
        return FlowRun.model_validate(answer)

    def explain_flow_run(self, flow_run_id: str) -> dict[str, Any]:
        """Which live agents could take the run, and which labels the others lack (``Explain`` as a dict)."""
        answer = self._http.request("GET", f"/runs/{segment(flow_run_id)}/explain")
        return Explain.model_validate(answer).model_dump(mode="json")

    def wait_for_flow_run(self, flow_run_id: str, timeout: float | None = None, poll_interval: float = 0.5) -> FlowRun:
        """Poll until the run is finished (Success, Failed or Cancelled) and return it.

        Raises:
            TimeoutError: it is not finished after ``timeout`` seconds; names the run and its state.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.05, poll_interval)
        while True:
            run = self.get_flow_run(flow_run_id)
            if run.state in FINISHED:
                return run
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"flow run {flow_run_id} ({run.run_name}) is still {run.state} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, poll_interval)

    # -- task runs and logs -------------------------------------------------------

    def get_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        """The run's task runs."""
        return _TASK_RUNS.validate_python(self._http.request("GET", f"/runs/{segment(flow_run_id)}/task_runs"))

    def set_task_run_states(
        self, flow_run_id: str, updates: Iterable[TaskRunUpdate | Mapping[str, Any]]
    ) -> list[TaskRun]:
        """Create or update task runs by slug, in one request (keys as in ``TaskRunUpdate``)."""
        body = {"task_runs": jsonable(list(updates), "task run updates")}
        # an upsert by slug of whole states: sending it twice is sending it once
        answer = self._http.request("POST", f"/runs/{segment(flow_run_id)}/task_runs", json=body, idempotent=True)
        return _TASK_RUNS.validate_python(answer)

    def write_logs(
        self,
        flow_run_id: str,
        records: Iterable[LogRecordIn | Mapping[str, Any]],
        batch_size: int = LOG_PAGE,
        claim: str | None = None,
        batch_id: str | None = None,
    ) -> int:
        """Append log records (keys as in ``LogRecordIn``; ``timestamp`` defaults to now, ``level`` to INFO).

        Sent in batches of at most ``batch_size`` records and ``MAX_BATCH_BYTES`` of JSON (the
        server refuses batches past its ``server.max_log_batch`` with TooLargeError). Each batch
        carries an id (``batch_id`` when given, which must then fit one batch; else a new one),
        so a batch retried after its answer was lost is stored once. Returns how many were stored.
        ``claim``: the claim the records are written under, as for :meth:`set_flow_run_state`.
        """
        now = datetime.datetime.now(datetime.UTC)
        rows: list[Any] = []
        for record in records:
            if isinstance(record, Mapping):
                record = {"timestamp": now, "level": "INFO", **record}
            rows.append(jsonable(record, "log records"))
        batches = log_batches(rows, max(1, batch_size))
        if batch_id is not None and len(batches) > 1:
            raise ValueError(
                f"batch_id {batch_id!r} names one batch, but these {len(rows)} log records need {len(batches)} "
                f"(at most {batch_size} records and {MAX_BATCH_BYTES} bytes of JSON each); send fewer, or leave "
                "batch_id out to have each batch named"
            )
        stored = 0
        path = f"/runs/{segment(flow_run_id)}/logs"
        for batch in batches:
            body = {"records": batch, "batch_id": batch_id or uuid.uuid4().hex}
            answer = self._http.request("POST", path, json=body, headers=_claim(claim), idempotent=True)
            stored += int(answer["stored"])
        return stored

    def read_logs(self, flow_run_id: str, offset: int = 0, limit: int = LOG_PAGE) -> LogPage:
        """One page of the run's log records from ``offset``; ``next_offset`` is where the next starts."""
        params = {"offset": offset, "limit": limit}
        return LogPage.model_validate(self._http.request("GET", f"/runs/{segment(flow_run_id)}/logs", params=params))

    def get_flow_run_logs(self, flow_run_id: str, offset: int = 0) -> list[LogRecord]:
        """Every log record of the run from ``offset`` (message, level, timestamp, name, task_slug)."""
        records: list[LogRecord] = []
        while True:
            page = self.read_logs(flow_run_id, offset=offset)
            records += page.records
            if len(page.records) < LOG_PAGE:
                return records
            offset = page.next_offset
