"""Creating flow runs: one (``POST /runs``) or a batch (``POST /runs/batch``), all or nothing.

Route: ``server/api/flow_runs.py``. Reading and changing runs is ``flow_runs.py``; the
Scheduled row of the state history every new run gets is written here, with the
statement of ``run_states.py``.

This is the hot path of run creation (``bench/api.py``). Its statements are Core
statements compiled once and run on the driver's connection (``database/raw.py``:
SQLAlchemy's execution machinery cost several times SQLite's own work here), each run's
values are converted by SQLAlchemy's own type processors, and the number of inserts does
not grow with the batch: one executemany each for the runs, their labels and their state
rows. Reads: one per distinct flow version the specs name (by id, or the latest by
project and flow name), and one per idempotency key given. A flow version's declared
parameters are read with the database's JSON operator, not by decoding its whole metadata.

Every spec is checked before anything is written; the first bad one (in the order given)
refuses the whole batch, and the error names it (``flow_runs[3]: ...``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from pydantic import TypeAdapter
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from headwater.core.run_states import FlowRunState
from headwater.schemas.flow_runs import FlowRun, FlowRunCreate
from headwater.server.database.orm import FlowRow, FlowRunLabelRow, FlowRunRow, ProjectRow
from headwater.server.database.raw import RawStatement, RawStatements, raw_transaction
from headwater.server.errors import ApiError, Conflict, Invalid, NotFound, TooLarge
from headwater.server.models.common import new_id, utcnow
from headwater.server.models.run_states import STATES

FLOWS = cast(Table, FlowRow.__table__)
PROJECTS = cast(Table, ProjectRow.__table__)
FLOW_RUNS = cast(Table, FlowRunRow.__table__)
FLOW_RUN_LABELS = cast(Table, FlowRunLabelRow.__table__)

#: Default of the ``server.max_parameters_size`` setting, in bytes of JSON.
MAX_PARAMETERS_SIZE = 1024 * 1024

_FLOW_FIELDS = select(
    FLOWS.c.id,
    FLOWS.c.name,
    FLOWS.c.version,
    FLOWS.c.archived,
    FLOWS.c.labels,
    FLOWS.c.metadata["parameters"].label("parameters"),
    PROJECTS.c.name.label("project_name"),
).join(PROJECTS, PROJECTS.c.id == FLOWS.c.project_id)
#: A flow version by id.
FLOW_BY_ID = _FLOW_FIELDS.where(FLOWS.c.id == bindparam("p_id"))
#: The newest unarchived version of a flow, by project and flow name.
LATEST_BY_NAME = (
    _FLOW_FIELDS.where(
        PROJECTS.c.name == bindparam("p_project"), FLOWS.c.name == bindparam("p_flow"), FLOWS.c.archived.is_(False)
    )
    .order_by(FLOWS.c.version.desc())
    .limit(1)
)
PROJECT_BY_NAME = select(PROJECTS.c.id).where(PROJECTS.c.name == bindparam("p_project"))
#: The run made before under an idempotency key of a flow version, as the answer shows it.
KEYED_RUN = (
    select(
        *(FLOW_RUNS.c[name] for name in FlowRun.model_fields if name in FLOW_RUNS.c),
        FLOWS.c.name.label("flow_name"),
        PROJECTS.c.name.label("project_name"),
    )
    .join(FLOWS, FLOWS.c.id == FLOW_RUNS.c.flow_id)
    .join(PROJECTS, PROJECTS.c.id == FLOWS.c.project_id)
    .where(FLOW_RUNS.c.flow_id == bindparam("p_flow"), FLOW_RUNS.c.idempotency_key == bindparam("p_key"))
)
#: The columns a new run's row is given (the others keep their defaults).
RUN_COLUMNS = (
    "id", "flow_id", "run_name", "state", "state_message", "version", "labels", "parameters", "agent_id",
    "idempotency_key", "scheduled_start_time", "created", "updated", "reschedule_count", "attempt",
)  # fmt: skip
STATE_COLUMNS = ("flow_run_id", "state", "message", "timestamp", "agent_id")

_STATEMENTS = RawStatements()
_FLOW_RUN_LIST = TypeAdapter(list[FlowRun])


def create_flow_runs(
    engine: Engine,
    specs: Sequence[FlowRunCreate],
    max_parameters_size: int = MAX_PARAMETERS_SIZE,
    *,
    batch: bool = False,
    max_runs: int | None = None,
) -> list[FlowRun]:
    """Scheduled runs of the flow versions ``specs`` name, in their order, committed together.

    Each run's labels are its flow version's (copied on) unless the spec gives some. A spec
    with an ``idempotency_key`` already used for its flow version answers the run made
    first (so does a repeat of the key within the batch); nothing new is made for it.

    Args:
        batch: name the bad spec in errors (``flow_runs[3]: ...``); a single create's
            messages name no index.
        max_runs: the most runs one call may create (``server.max_run_batch``), or None.

    Raises:
        TooLarge: more than ``max_runs`` specs, or a spec's parameters are over
            ``max_parameters_size`` bytes of JSON (413).
        NotFound: a flow version, project or flow name that does not exist (404).
        Conflict: an archived flow version (409).
        Invalid: parameters the flow does not declare, or required ones missing (422).
    """
    if max_runs is not None and len(specs) > max_runs:
        raise TooLarge(
            f"POST /runs/batch creates at most {max_runs:,} runs per request, this one holds {len(specs):,} (setting "
            "server.max_run_batch, env HEADWATER__SERVER__MAX_RUN_BATCH); send them in batches of that many, or "
            "raise the limit"
        )
    for attempt in (1, 2):
        try:
            with raw_transaction(engine) as cursor:
                return _Creation(engine, cursor).create(specs, max_parameters_size, batch)
        except IntegrityError:
            # the same idempotency key, used at the same moment by another request: the second
            # pass finds its run (anything else fails the same way again, and is raised)
            if attempt == 2 or not any(spec.idempotency_key for spec in specs):
                raise
    raise AssertionError("unreachable")


class _Creation:
    """One transaction's creation of runs, on a DBAPI cursor."""

    def __init__(self, engine: Engine, cursor: Any) -> None:
        self.engine = engine
        self.cursor = cursor

    def statement(self, name: str, statement: Any, columns: Sequence[str] | None = None) -> RawStatement:
        return _STATEMENTS.get(self.engine, name, statement, columns)

    def create(self, specs: Sequence[FlowRunCreate], max_parameters_size: int, batch: bool) -> list[FlowRun]:
        flows: dict[Any, dict[str, Any] | None] = {}
        now = utcnow()
        answers: list[FlowRun | dict[str, Any]] = []
        runs: list[dict[str, Any]] = []
        labels: list[dict[str, Any]] = []
        made: dict[tuple[str, str], FlowRun | dict[str, Any]] = {}  # by (flow id, idempotency key)
        for index, spec in enumerate(specs):
            try:
                check_parameters_size(spec.parameters, max_parameters_size)
                flow = self.flow(spec, flows)
                if flow["archived"]:
                    raise Conflict(
                        f"flow {flow['name']!r} version {flow['version']} is archived; register it again to run it"
                    )
                key = (flow["id"], spec.idempotency_key) if spec.idempotency_key is not None else None
                if key is not None:
                    earlier = made.get(key) or self.keyed_run(*key)
                    if earlier is not None:
                        answers.append(earlier)
                        made[key] = earlier
                        continue
                check_parameters(flow["name"], flow["parameters"] or [], spec.parameters)
            except ApiError as exc:
                if batch:
                    raise type(exc)(f"flow_runs[{index}]: {exc.detail}") from None
                raise
            run_id = new_id()
            values: dict[str, Any] = {
                "id": run_id,
                "flow_id": flow["id"],
                "run_name": spec.run_name or f"{flow['name']}-{run_id[:8]}",
                "state": FlowRunState.SCHEDULED,
                "state_message": None,
                "version": 1,
                "labels": list(spec.labels) if spec.labels is not None else list(flow["labels"]),
                "parameters": spec.parameters,
                "agent_id": None,
                "idempotency_key": spec.idempotency_key,
                "scheduled_start_time": spec.scheduled_start_time or now,
                "created": now,
                "updated": now,
                "reschedule_count": 0,
                "attempt": 0,
            }
            runs.append(values)
            labels.extend({"flow_run_id": run_id, "label": label, "created": now} for label in values["labels"])
            answer = {**values, "flow_name": flow["name"], "project_name": flow["project_name"]}
            answers.append(answer)
            if key is not None:
                made[key] = answer
        self.insert(runs, labels, now)
        # validated together, in Rust: a third of the time of building each model in Python
        return _FLOW_RUN_LIST.validate_python(answers)

    def insert(self, runs: list[dict[str, Any]], labels: list[dict[str, Any]], now: Any) -> None:
        if not runs:
            return
        self.statement("insert_runs", insert(FLOW_RUNS), RUN_COLUMNS).executemany(self.cursor, runs)
        if labels:
            self.statement("insert_labels", insert(FLOW_RUN_LABELS), ("flow_run_id", "label", "created")).executemany(
                self.cursor, labels
            )
        states = [
            {"flow_run_id": run["id"], "state": FlowRunState.SCHEDULED, "message": None, "timestamp": now,
             "agent_id": None}
            for run in runs
        ]  # fmt: skip
        self.statement("insert_states", insert(STATES), STATE_COLUMNS).executemany(self.cursor, states)

    def flow(self, spec: FlowRunCreate, flows: dict[Any, dict[str, Any] | None]) -> dict[str, Any]:
        """The spec's flow version (each read once per batch), or NotFound naming what is missing."""
        if spec.flow_id is not None:
            if spec.flow_id not in flows:
                found = self.statement("flow_by_id", FLOW_BY_ID).rows(self.cursor, {"p_id": spec.flow_id})
                flows[spec.flow_id] = found[0] if found else None
            flow = flows[spec.flow_id]
            if flow is None:
                raise NotFound(f"flow {spec.flow_id!r} not found")
            return flow
        project, name = spec.project_name, spec.flow_name
        if (project, name) not in flows:
            found = self.statement("latest_by_name", LATEST_BY_NAME).rows(
                self.cursor, {"p_project": project, "p_flow": name}
            )
            flows[(project, name)] = found[0] if found else None
        flow = flows[(project, name)]
        if flow is not None:
            return flow
        if not self.statement("project_by_name", PROJECT_BY_NAME).rows(self.cursor, {"p_project": project}):
            raise NotFound(f"project {project!r} not found; create it with `headwater create project {project}`")
        raise NotFound(
            f"flow {name!r} not found in project {project!r}; register it with "
            f"`headwater register --project {project} path/to/flow.py`"
        )

    def keyed_run(self, flow_id: str, key: str) -> FlowRun | None:
        """The run made before under idempotency key ``key`` of this flow version, if any."""
        found = self.statement("keyed_run", KEYED_RUN).rows(self.cursor, {"p_flow": flow_id, "p_key": key})
        return FlowRun.model_validate(found[0]) if found else None


def check_parameters(flow_name: str, declared: list[dict[str, Any]], given: dict[str, Any]) -> None:
    """Invalid (422) naming unknown parameters, or missing required ones."""
    names = {p["name"] for p in declared}
    unknown = sorted(set(given) - names)
    if unknown:
        raise Invalid(
            f"flow {flow_name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
            f"its parameters are: {', '.join(sorted(names)) or 'none'}"
        )
    missing = sorted(p["name"] for p in declared if p["required"] and p["name"] not in given)
    if missing:
        raise Invalid(f"flow {flow_name!r} needs parameter(s) {', '.join(map(repr, missing))} (required, no default)")


def check_parameters_size(parameters: dict[str, Any], limit: int) -> None:
    """TooLarge (413) when the parameters, as JSON, are over ``limit`` bytes."""
    if not parameters:
        return
    size = len(json.dumps(parameters, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    if size > limit:
        raise TooLarge(
            f"the run's parameters are {size:,} bytes of JSON, over the server's limit of {limit:,} bytes (setting "
            "server.max_parameters_size, env HEADWATER__SERVER__MAX_PARAMETERS_SIZE); pass large data by reference "
            "(a path or URL) instead"
        )
