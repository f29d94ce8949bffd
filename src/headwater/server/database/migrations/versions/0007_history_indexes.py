"""Indexes for a long history (issue 15): reads that stay fast with a million finished runs.

``GET /runs`` answers newest first (``ORDER BY created DESC, id DESC``); each index below
lets one filter walk runs in that order and stop at the page's end, instead of reading and
sorting every matching run (``server/models/flow_runs.py``, ``list_flow_runs``):

- ``ix_flow_runs_created (created, id)``: no filter;
- ``ix_flow_runs_state_created (state, created, id)``: by state;
- ``ix_flow_runs_flow_created (flow_id, created, id)``: by flow version (replaces
  ``ix_flow_runs_flow_id``, whose column it begins with);
- ``ix_flow_run_labels_label (label, flow_run_id)``: the runs of a label, for a rare label.

The retention prune (``server/services/retention.py``) finds finished runs by when they
finished (their last change): ``ix_flow_runs_state_updated (state, updated)``. A run's log
is read in the order it was stored: ``ix_logs_run_id (flow_run_id, id)`` (replaces
``ix_logs_flow_run_id``). The claim's candidates already begin at ``state = 'Scheduled'`` in
``ix_flow_runs_claim_order`` (migration 0004), so finished runs are never read by a claim.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_flow_runs_created", "flow_runs", ["created", "id"])
    op.create_index("ix_flow_runs_state_created", "flow_runs", ["state", "created", "id"])
    op.create_index("ix_flow_runs_flow_created", "flow_runs", ["flow_id", "created", "id"])
    op.drop_index("ix_flow_runs_flow_id", table_name="flow_runs")
    op.create_index("ix_flow_runs_state_updated", "flow_runs", ["state", "updated"])
    op.create_index("ix_flow_run_labels_label", "flow_run_labels", ["label", "flow_run_id"])
    op.create_index("ix_logs_run_id", "logs", ["flow_run_id", "id"])
    op.drop_index("ix_logs_flow_run_id", table_name="logs")


def downgrade() -> None:
    op.create_index("ix_logs_flow_run_id", "logs", ["flow_run_id"])
    op.drop_index("ix_logs_run_id", table_name="logs")
    op.drop_index("ix_flow_run_labels_label", table_name="flow_run_labels")
    op.drop_index("ix_flow_runs_state_updated", table_name="flow_runs")
    op.create_index("ix_flow_runs_flow_id", "flow_runs", ["flow_id"])
    op.drop_index("ix_flow_runs_flow_created", table_name="flow_runs")
    op.drop_index("ix_flow_runs_state_created", table_name="flow_runs")
    op.drop_index("ix_flow_runs_created", table_name="flow_runs")
