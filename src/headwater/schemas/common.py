"""Pieces shared by the wire schemas: labels, names, timestamps, pages, errors."""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from headwater.core.labels import MAX_LABEL_LENGTH, check_labels

__all__ = ["MAX_LABEL_LENGTH", "ErrorBody", "Health", "Labels", "Model", "Name", "check_labels", "utcnow"]


def _labels(value: list[str]) -> list[str]:
    return sorted(check_labels(value))


#: A set of labels on the wire: the one label rule (``check_labels``), sorted, without repeats.
Labels = Annotated[list[Annotated[str, Field(max_length=MAX_LABEL_LENGTH)]], AfterValidator(_labels)]

#: A name of a project, flow, agent or token.
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


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
