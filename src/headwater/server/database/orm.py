"""The database tables (SQLAlchemy ORM). Queries live in ``server/models``; the schema is
created and upgraded only by the Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """Stored as naive UTC (both databases compare them alike), returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=datetime.UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    pass


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime)


class FlowRow(Base):
    __tablename__ = "flows"
    __table_args__ = (
        UniqueConstraint("project_id", "name", "version"),
        Index("ix_flows_project_name_hash", "project_id", "name", "metadata_hash"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    flow_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    metadata_hash: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(JSON)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime)


class FlowRunRow(Base):
    __tablename__ = "flow_runs"
    __table_args__ = (
        Index("ix_flow_runs_claim_order", "state", "scheduled_start_time", "created", "id"),  # the claim's order
        Index("ix_flow_runs_claim_id", "claim_id"),  # a retried claim's runs
        # newest-first pages of GET /runs, and the prune (migration 0007)
        Index("ix_flow_runs_created", "created", "id"),
        Index("ix_flow_runs_state_created", "state", "created", "id"),
        Index("ix_flow_runs_flow_created", "flow_id", "created", "id"),
        Index("ix_flow_runs_state_updated", "state", "updated"),
        UniqueConstraint("flow_id", "idempotency_key"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flow_id: Mapped[str] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"))
    run_name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    state_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    labels: Mapped[list[str]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    agent_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    scheduled_start_time: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    updated: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    start_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reschedule_count: Mapped[int] = mapped_column(Integer, default=0)
    #: the number of the claim the run is under: each claim adds one; writes under an older one are refused.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the id the claiming agent sent with that claim: a retried claim answers the same runs.
    claim_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FlowRunLabelRow(Base):
    """One row per label of a run: what the claim query matches on, in SQL."""

    __tablename__ = "flow_run_labels"
    __table_args__ = (Index("ix_flow_run_labels_created", "label", "created", "flow_run_id"),)  # migration 0008
    flow_run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: the run's ``created`` (never changed after), so a label's runs are read newest first from the index
    created: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FlowRunStateRow(Base):
    """One row per state a run entered, written with the change (``server/models/run_states.py``)."""

    __tablename__ = "flow_run_states"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow_run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    timestamp: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    #: the agent holding the run when it changed (None when no agent held it).
    agent_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class TaskRunRow(Base):
    __tablename__ = "task_runs"
    __table_args__ = (UniqueConstraint("flow_run_id", "task_slug"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"), index=True)
    task_slug: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(50))
    state_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    start_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_time: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated: Mapped[datetime.datetime] = mapped_column(UTCDateTime)


class LogRow(Base):
    __tablename__ = "logs"
    __table_args__ = (Index("ix_logs_run_id", "flow_run_id", "id"),)  # a run's log in stored order (0007)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow_run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    task_slug: Mapped[str | None] = mapped_column(String(500), nullable=True)
    #: the id of the batch it came in (a retried batch is stored once), or None.
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AgentRow(Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("name", "kind"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(200))
    labels: Mapped[list[str]] = mapped_column(JSON)
    #: the identity (``server/identity.py``) of the token that registered it; None when auth is off.
    owner: Mapped[str | None] = mapped_column(String(250), nullable=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime.datetime] = mapped_column(UTCDateTime)


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    #: an agent token bound to one agent: the only agent name it may register and act for.
    agent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: a named pool of agents: every token of the pool acts for every agent of the pool.
    pool: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: when the token stops working (None: never).
    expires: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SecretRow(Base):
    """A secret: its upper-cased name and its value encrypted with the server's key (``server/secret_key.py``)."""

    __tablename__ = "secrets"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: the Fernet token of the value; never the value itself.
    ciphertext: Mapped[str] = mapped_column(Text)
    #: which key encrypted it (a fingerprint, not the key), so another key is a clear error.
    key_id: Mapped[str] = mapped_column(String(16))
    #: project names whose runs' agents may read it; None: any agent token may.
    projects: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    updated: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
