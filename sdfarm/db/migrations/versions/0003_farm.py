"""farm: the workers table (heartbeat, current job, loaded model)

Revision ID: 0003_farm
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_farm"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(), nullable=False),
        sa.Column("current_job_id", sa.Integer(), nullable=True),
        sa.Column("current_sweep_id", sa.Integer(), nullable=True),
        sa.Column("loaded_model", sa.String(length=1024), nullable=True),
        sa.Column("jobs_done", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workers_current_sweep_id"), ["current_sweep_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workers_current_sweep_id"))
    op.drop_table("workers")
