"""Flow metadata: what ``flow.serialize()`` produces and registration sends to the API.

It is plain JSON: tasks by slug, edges between slugs, parameters, and the
storage and environment specs. Everything an agent acts on is here, so an
agent never unpickles a flow (DESIGN.md §4). Built by
``headwater/serialization.py``; the server validates against the same model.
"""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from headwater.schemas.common import MAX_INT32, Labels, Model, Name

#: Bumped when the metadata's shape changes incompatibly.
METADATA_VERSION = 1
#: Longest delay or timeout a task may have, in seconds (a year: longer ones overflow the engine's clock).
MAX_SECONDS = 365 * 24 * 3600.0


class TaskMetadata(BaseModel):
    """One task of a flow."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(min_length=1, description="The task's id, unique in the flow.")
    name: str = Field(min_length=1, description="The task's display name.")
    type: str = Field(description="Import path of the task's class.")
    function: str | None = Field(None, description="Import path of the function, for @task tasks.")
    tags: list[str] = Field(default_factory=list)
    max_retries: int = Field(0, ge=0, le=MAX_INT32)
    retry_delay: float = Field(0.0, ge=0, le=MAX_SECONDS, description="Seconds between retries.")
    timeout: float | None = Field(None, gt=0, le=MAX_SECONDS, description="Seconds an attempt may run.")
    trigger: str = Field("all_successful", description="Trigger name or import path.")
    skip_on_upstream_skip: bool = True
    nout: int | None = Field(None, ge=1, le=MAX_INT32)
    checkpoint: bool | None = None
    constant_args: list[str] = Field(
        default_factory=list, description="Arguments given as constants (values are not sent)."
    )


class EdgeMetadata(BaseModel):
    """An edge between two task slugs; ``key`` names the argument the data fills."""

    model_config = ConfigDict(extra="forbid")

    upstream: str
    downstream: str
    key: str | None = None


class ParameterMetadata(BaseModel):
    """A parameter of the flow; its slug is its name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    default: Any = None
    required: bool


class FlowMetadata(BaseModel):
    """A flow as JSON. Checked: slugs unique, edges and parameters name known tasks."""

    model_config = ConfigDict(extra="forbid")

    metadata_version: int = Field(METADATA_VERSION, ge=1)
    headwater_version: str
    name: str = Field(min_length=1)
    tasks: list[TaskMetadata]
    edges: list[EdgeMetadata] = Field(default_factory=list)
    parameters: list[ParameterMetadata] = Field(default_factory=list)
    reference_tasks: list[str] = Field(default_factory=list)
    storage: dict[str, Any] | None = Field(None, description="The storage spec ({'kind': ...}).")
    environment: dict[str, Any] | None = Field(None, description="The environment spec.")
    executor: dict[str, Any] | None = Field(None, description="flow.executor's spec ({'kind': ...}).")
    schedule: dict[str, Any] | None = None
    labels: Labels = Field(default_factory=list, description="Environment and storage labels.")

    @field_validator("metadata_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > METADATA_VERSION:
            raise ValueError(
                f"metadata_version {value} is newer than this headwater understands "
                f"({METADATA_VERSION}); upgrade headwater"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FlowMetadata:
        slugs: set[str] = set()
        for t in self.tasks:
            if t.slug in slugs:
                raise ValueError(f"task slug {t.slug!r} appears twice; slugs must be unique")
            slugs.add(t.slug)
        for e in self.edges:
            for end in (e.upstream, e.downstream):
                if end not in slugs:
                    raise ValueError(f"edge {e.upstream} → {e.downstream} names unknown task {end!r}")
        for p in self.parameters:
            if p.name not in slugs:
                raise ValueError(f"parameter {p.name!r} is not among the tasks")
        for r in self.reference_tasks:
            if r not in slugs:
                raise ValueError(f"reference task {r!r} is not among the tasks")
        return self


# -- registration and registered flows on the wire ------------------------------


class FlowCreate(Model):
    """Register a flow version: its metadata, into a project, with extra labels."""

    project_name: Name
    metadata: FlowMetadata
    labels: Labels = Field(default_factory=list, description="Added to the metadata's labels.")
    idempotency_key: str | None = Field(None, max_length=200)


class Flow(Model):
    """A registered flow version."""

    id: str
    project_id: str
    project_name: str
    name: str
    version: int
    labels: list[str]
    archived: bool
    created: datetime.datetime
    parameters: list[ParameterMetadata] = Field(default_factory=list)


class FlowDetail(Flow):
    """A flow version with its full metadata."""

    metadata: FlowMetadata


class FlowRegistered(Model):
    id: str
    name: str
    version: int
    labels: list[str]
    #: False when identical metadata was registered before and that version is returned.
    created: bool
