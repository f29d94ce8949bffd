"""Pieces shared by the wire schemas: labels, names, timestamps, pages, errors."""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from headwater.core.labels import MAX_LABEL_LENGTH, check_labels

__all__ = [
    "MAX_INT32",
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "ErrorBody",
    "Health",
    "Labels",
    "Model",
    "Name",
    "RequestId",
    "Timestamp",
    "check_labels",
    "utcnow",
]

#: Most labels one run, flow, agent or claim may have.
MAX_LABELS = 100
#: The largest integer an ``Integer`` column holds on every database (PostgreSQL's INTEGER is 32-bit).
MAX_INT32 = 2**31 - 1


def _labels(value: list[str]) -> list[str]:
    if any("\x00" in label for label in value):
        raise ValueError("a label must not hold a NUL character")
    return sorted(check_labels(value))


#: A set of labels on the wire: the one label rule (``check_labels``), sorted, without repeats, at most 100.
Labels = Annotated[
    list[Annotated[str, Field(max_length=MAX_LABEL_LENGTH)]], Field(max_length=MAX_LABELS), AfterValidator(_labels)
]


def _utc(value: datetime.datetime) -> datetime.datetime:
    """``value`` in UTC (naive means UTC): what the database stores, refused when UTC can't hold it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    try:
        return value.astimezone(datetime.UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside the years 1-9999 in UTC") from None


#: A point in time on the wire, normalised to UTC (years 1 to 9999 there).
Timestamp = Annotated[datetime.datetime, AfterValidator(_utc)]

#: A name of a project, flow, agent or token.
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]

#: An id a client makes for a request it may send again (a claim, a log batch): the server
#: answers a repeat with what the first one did.
RequestId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def utcnow() -> datetime.datetime:
    """Now, timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


class Model(BaseModel):
    """Base of the wire schemas: unknown fields are refused, so typos are 422s."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: ``detail`` says what is wrong and how to fix it."""

    detail: str | list[dict[str, object]]


class Health(Model):
    status: str
    version: str
    database: str
