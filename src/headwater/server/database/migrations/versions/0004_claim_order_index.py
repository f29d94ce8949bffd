"""The claim's order in an index: ``flow_runs (state, scheduled_start_time, created, id)``.

A claim takes the oldest due matching runs first (``server/models/work.py``). With only
``(state, scheduled_start_time)`` indexed, the database read and sorted every due
Scheduled run on each claim (a cost that grew with the queue); in this order it walks
the index and stops at the first runs the agent's labels match. It replaces
``ix_flow_runs_due``, whose columns it begins with.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_flow_runs_claim_order", "flow_runs", ["state", "scheduled_start_time", "created", "id"])
    op.drop_index("ix_flow_runs_due", table_name="flow_runs")


def downgrade() -> None:
    op.create_index("ix_flow_runs_due", "flow_runs", ["state", "scheduled_start_time"])
    op.drop_index("ix_flow_runs_claim_order", table_name="flow_runs")
