"""The state history of flow runs: one row per state a run entered (``GET /runs/{id}/states``).

Runs made before this migration get two rows from what the run itself records: Scheduled at
its creation and, unless it is still Scheduled, its current state at its last update.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headwater.server.database.orm import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_run_states",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("flow_run_id", sa.String(36), sa.ForeignKey("flow_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_flow_run_states_flow_run_id", "flow_run_states", ["flow_run_id"])
    op.execute(
        "INSERT INTO flow_run_states (flow_run_id, state, message, timestamp, agent_id) "
        "SELECT id, 'Scheduled', NULL, created, NULL FROM flow_runs"
    )
    op.execute(
        "INSERT INTO flow_run_states (flow_run_id, state, message, timestamp, agent_id) "
        "SELECT id, state, state_message, updated, agent_id FROM flow_runs WHERE state <> 'Scheduled'"
    )


def downgrade() -> None:
    op.drop_index("ix_flow_run_states_flow_run_id", table_name="flow_run_states")
    op.drop_table("flow_run_states")
