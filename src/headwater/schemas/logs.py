"""Log records on the wire: appended in batches, listed per flow run with paging."""

from __future__ import annotations

from pydantic import Field

from headwater.schemas.common import Model, Timestamp

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogRecordIn(Model):
    timestamp: Timestamp
    level: str = Field(pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    message: str = Field(max_length=100_000)
    name: str = Field("headwater", max_length=200)
    task_slug: str | None = Field(None, max_length=500)


class LogBatch(Model):
    records: list[LogRecordIn] = Field(min_length=1)


class LogRecord(LogRecordIn):
    id: int
    flow_run_id: str


class LogPage(Model):
    records: list[LogRecord]
    next_offset: int
