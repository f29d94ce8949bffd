"""Claims, agent identity, token lifetimes, project-scoped secrets (issue 13).

- ``flow_runs.attempt``: the number of the claim a run is under (each claim adds one);
  a write carrying an older claim is refused (fencing). ``flow_runs.claim_id``: the
  id the agent sent with the claim that took it, so a retried claim answers the same runs.
- ``agents.owner``: the identity (token pool) that registered the agent; only tokens
  of that identity may act for it.
- ``tokens.agent`` / ``tokens.pool`` / ``tokens.expires``: what an agent token is bound
  to, and when it stops working.
- ``secrets.projects``: the projects whose runs' agents may read the secret (null: any).
- ``logs.batch_id``: the id a client sends with a log batch, so a retried batch is stored once.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headwater.server.database.orm import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("claim_id", sa.String(64), nullable=True))
    op.create_index("ix_flow_runs_agent_claim", "flow_runs", ["agent_id", "claim_id"])
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("owner", sa.String(250), nullable=True))
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("agent", sa.String(200), nullable=True))
        batch.add_column(sa.Column("pool", sa.String(200), nullable=True))
        batch.add_column(sa.Column("expires", UTCDateTime(), nullable=True))
    with op.batch_alter_table("secrets") as batch:
        batch.add_column(sa.Column("projects", sa.JSON(), nullable=True))
    with op.batch_alter_table("logs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(64), nullable=True))
    op.create_index("ix_logs_run_batch", "logs", ["flow_run_id", "batch_id"])


def downgrade() -> None:
    op.drop_index("ix_logs_run_batch", "logs")
    with op.batch_alter_table("logs") as batch:
        batch.drop_column("batch_id")
    with op.batch_alter_table("secrets") as batch:
        batch.drop_column("projects")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("expires")
        batch.drop_column("pool")
        batch.drop_column("agent")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("owner")
    op.drop_index("ix_flow_runs_agent_claim", "flow_runs")
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_column("claim_id")
        batch.drop_column("attempt")
