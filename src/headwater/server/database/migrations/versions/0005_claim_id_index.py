"""An index on ``flow_runs.claim_id``: a claim looks up the runs its ``claim_id`` took before.

Every claim carries a ``claim_id`` (the client makes one per call), and the server first
looks for runs an earlier try of that claim took (``server/models/work.py``): without an
index that read scanned every run, a cost growing with the history.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_flow_runs_claim_id", "flow_runs", ["claim_id"])


def downgrade() -> None:
    op.drop_index("ix_flow_runs_claim_id", table_name="flow_runs")
