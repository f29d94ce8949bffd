"""The runs of a label, newest first (issue 15): ``flow_run_labels.created``.

``GET /runs?label=gpu`` with no state or flow filter walked the runs newest first and
looked each one's labels up: with a rare label in a long history that read most of the
history to fill one page. Each label row now carries its run's ``created`` (which never
changes after the run is made), and ``ix_flow_run_labels_created (label, created,
flow_run_id)`` lets the filter walk the label's own runs newest first and stop at the
page's end (``server/models/flow_runs.py``, ``list_flow_runs``). It replaces
``ix_flow_run_labels_label (label, flow_run_id)`` (migration 0007), whose only reader
that was. Existing rows take their run's ``created``.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headwater.server.database.orm import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flow_run_labels", sa.Column("created", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE flow_run_labels SET created = "
        "(SELECT flow_runs.created FROM flow_runs WHERE flow_runs.id = flow_run_labels.flow_run_id)"
    )
    op.create_index("ix_flow_run_labels_created", "flow_run_labels", ["label", "created", "flow_run_id"])
    op.drop_index("ix_flow_run_labels_label", table_name="flow_run_labels")


def downgrade() -> None:
    op.create_index("ix_flow_run_labels_label", "flow_run_labels", ["label", "flow_run_id"])
    op.drop_index("ix_flow_run_labels_created", table_name="flow_run_labels")
    with op.batch_alter_table("flow_run_labels") as batch:
        batch.drop_column("created")
