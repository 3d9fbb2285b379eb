"""who executes a sweep: the farm's workers, or one `sdfarm render` process

A local render's jobs must never reach the farm's workers: ``recover`` sends only farm
sweeps' queued jobs, and tells a local render whose process is gone by its host and pid.
Earlier sweeps count as the farm's (that is how recover treated them). Also an index on
``reused_from_job_id``: a job of one farm sweep may wait for a job of another rendering the
same key, and is found from that job when it ends.

Revision ID: 0009_executor
Revises: 0008_families
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_executor"
down_revision = "0008_families"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("executor", sa.String(length=16), nullable=False,
                                      server_default="farm"))
        batch_op.add_column(sa.Column("executor_host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("executor_pid", sa.Integer(), nullable=True))
    # Jobs waiting for another sweep's job are found by it when it ends (sdfarm.db.waiting).
    op.create_index("ix_jobs_reused_from", "jobs", ["reused_from_job_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_reused_from", table_name="jobs")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("executor_pid")
        batch_op.drop_column("executor_host")
        batch_op.drop_column("executor")
