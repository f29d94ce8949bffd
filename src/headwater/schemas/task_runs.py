"""Task runs on the wire: the runner reports them in batches per flow run."""

from __future__ import annotations

import datetime

from pydantic import Field, field_validator

from headwater.core.state import STATES
from headwater.schemas.common import MAX_INT32, Model, Timestamp

#: Most task runs one batch may report.
MAX_TASK_RUN_BATCH = 10_000


class TaskRunUpdate(Model):
    task_slug: str = Field(min_length=1, max_length=500)
    state: str = Field(
        min_length=1,
        max_length=50,
        description="A state name of the engine (Running, Success, ...).",
        json_schema_extra={"enum": list(STATES)},
    )
    message: str | None = Field(None, max_length=10_000)
    attempts: int = Field(0, ge=0, le=MAX_INT32)
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str) -> str:
        if value not in STATES:
            shown = value if len(value) <= 50 else value[:50] + "…"
            raise ValueError(f"task state {shown!r} is not a state the engine has; use one of {', '.join(STATES)}")
        return value


class TaskRunBatch(Model):
    task_runs: list[TaskRunUpdate] = Field(min_length=1, max_length=MAX_TASK_RUN_BATCH)


class TaskRun(Model):
    id: str
    flow_run_id: str
    task_slug: str
    state: str
    state_message: str | None
    attempts: int
    start_time: datetime.datetime | None
    end_time: datetime.datetime | None
    updated: datetime.datetime
