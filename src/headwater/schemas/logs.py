"""Log records on the wire: appended in batches, listed per flow run with paging."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from headwater.schemas.common import Model, RequestId, Timestamp

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Most bytes of JSON a client puts in one log request (the server refuses a body past
#: ``server.max_request_size``, 8 MiB by default, with 413).
MAX_BATCH_BYTES = 4 * 1024 * 1024


class LogRecordIn(Model):
    timestamp: Timestamp
    level: str = Field(pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    message: str = Field(max_length=100_000)
    name: str = Field("headwater", max_length=200)
    task_slug: str | None = Field(None, max_length=500)


class LogBatch(Model):
    records: list[LogRecordIn] = Field(min_length=1)
    batch_id: RequestId | None = Field(
        None,
        description="The batch's id, chosen by the client: a batch sent again with the same id (a retry after "
        "its answer was lost) is stored once.",
    )


class LogRecord(LogRecordIn):
    id: int
    flow_run_id: str


class LogPage(Model):
    records: list[LogRecord]
    next_offset: int


def log_batches(records: list[Any], max_records: int = 1000, max_bytes: int = MAX_BATCH_BYTES) -> list[list[Any]]:
    """``records`` (JSON values) cut, in order, into batches of at most ``max_records`` records and
    ``max_bytes`` bytes of JSON each (a single record larger than that goes alone).

    What the client's ``write_logs`` and the flow-run process's shipper send per request.
    """
    batches: list[list[Any]] = []
    batch: list[Any] = []
    size = 64  # the body around the records: {"records": [...], "batch_id": "..."}
    for record in records:
        # ASCII-escaped, as the largest encoding a client may send; datetimes as their str
        length = len(json.dumps(record, default=str)) + 1
        if batch and (len(batch) >= max_records or size + length > max_bytes):
            batches.append(batch)
            batch, size = [], 64
        batch.append(record)
        size += length
    if batch:
        batches.append(batch)
    return batches
