"""Flow runs on the wire. Server side: ``server/api/flow_runs.py``."""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import Field, model_validator

from headwater.core.run_states import FINISHED, FlowRunState
from headwater.schemas.common import MAX_INT32, Labels, Model, Name, Timestamp

#: Flow-run states the API knows, in the order a run goes through them; the server's transition
#: rules are in server/models/transitions.py. FINISHED_STATES: the ones a run never leaves.
FLOW_RUN_STATES: tuple[FlowRunState, ...] = tuple(FlowRunState)
FINISHED_STATES = FINISHED


class FlowRunCreate(Model):
    """Create a run of a flow version: by id, or by project and flow name (latest version)."""

    flow_id: str | None = None
    project_name: Name | None = None
    flow_name: Name | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    labels: Labels | None = Field(None, description="Default: the flow version's labels.")
    idempotency_key: str | None = Field(None, max_length=200)
    scheduled_start_time: Timestamp | None = None
    run_name: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _which_flow(self) -> FlowRunCreate:
        by_name = self.project_name is not None or self.flow_name is not None
        if self.flow_id is None and not (self.project_name and self.flow_name):
            raise ValueError("give flow_id, or both project_name and flow_name")
        if self.flow_id is not None and by_name:
            raise ValueError("give flow_id or project_name + flow_name, not both")
        return self


class FlowRunBatchCreate(Model):
    """Create several runs in one request (``POST /runs/batch``): all of them, or none.

    The server takes at most ``server.max_run_batch`` runs per request (default 1000; more: 413).
    """

    flow_runs: list[FlowRunCreate] = Field(description="The runs to create, each as for POST /runs.")


class FlowRun(Model):
    id: str
    flow_id: str
    flow_name: str
    project_name: str
    run_name: str
    state: str
    state_message: str | None = None
    version: int
    labels: list[str]
    parameters: dict[str, Any]
    agent_id: str | None = None
    idempotency_key: str | None = None
    scheduled_start_time: datetime.datetime
    created: datetime.datetime
    updated: datetime.datetime
    submitted_at: datetime.datetime | None = Field(None, description="When an agent claimed it.")
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None
    heartbeat: datetime.datetime | None = None
    reschedule_count: int = 0
    attempt: int = Field(0, description="The number of the claim the run is under (each claim adds one).")


class FlowRunBatch(Model):
    """The runs ``POST /runs/batch`` created, in the order they were given."""

    flow_runs: list[FlowRun]


class FlowRunPage(Model):
    flow_runs: list[FlowRun]
    total: int = Field(
        description="The matching runs, counted up to 100 past this page (see total_exact): a long history "
        "is not counted to its end on every page."
    )
    total_exact: bool = Field(
        True, description="False when there are more matching runs than total: the count stopped there."
    )
    offset: int
    limit: int


class SetState(Model):
    """Propose a state; the server checks the transition and, when given, the version."""

    state: str = Field(min_length=1)
    message: str | None = Field(None, max_length=10_000)
    version: int | None = Field(None, ge=0, le=MAX_INT32, description="The run's version as last read; stale → 409.")


class FlowRunStateEntry(Model):
    """One state a run entered: ``GET /runs/{id}/states`` answers these, oldest first."""

    state: str
    message: str | None = None
    timestamp: datetime.datetime
    agent_id: str | None = Field(None, description="The agent holding the run when it changed, if any.")


class ExplainAgent(Model):
    id: str
    name: str
    kind: str
    labels: list[str]
    last_seen: datetime.datetime
    can_run: bool
    missing_labels: list[str]
    reason: str


class Explain(Model):
    flow_run_id: str
    state: str
    labels: list[str]
    matched: bool
    message: str
    agents: list[ExplainAgent]
