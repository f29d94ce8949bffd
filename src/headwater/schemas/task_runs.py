"""Task runs on the wire: the runner reports them in batches per flow run."""

from __future__ import annotations

import datetime

from pydantic import Field

from headwater.schemas.common import Model


class TaskRunUpdate(Model):
    task_slug: str = Field(min_length=1, max_length=500)
    state: str = Field(min_length=1, max_length=50)
    message: str | None = Field(None, max_length=10_000)
    attempts: int = Field(0, ge=0)
    start_time: datetime.datetime | None = None
    end_time: datetime.datetime | None = None


class TaskRunBatch(Model):
    task_runs: list[TaskRunUpdate] = Field(min_length=1)


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
