"""who executes a sweep: the farm's workers, or one `sdfarm render` process

A local render's jobs must never reach the farm's workers: ``recover`` sends only farm
sweeps' queued jobs, and tells a local render whose process is gone by its host and pid.
Earlier sweeps count as the farm's (that is how recover treated them).

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


def downgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("executor_pid")
        batch_op.drop_column("executor_host")
        batch_op.drop_column("executor")
