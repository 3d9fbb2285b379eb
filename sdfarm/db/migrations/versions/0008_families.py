"""model families: family, prediction type, Flux's distilled guidance and a flow shift

Earlier jobs get sd1 and epsilon (sdfarm rendered only SD 1.x models, as epsilon-prediction)
and no guidance or shift.

Revision ID: 0008_families
Revises: 0007_noise
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_families"
down_revision = "0007_noise"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("family", sa.String(length=16), nullable=False,
                                      server_default="sd1"))
        batch_op.add_column(sa.Column("prediction", sa.String(length=8), nullable=False,
                                      server_default="epsilon"))
        batch_op.add_column(sa.Column("guidance", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("shift", sa.Float(), nullable=True))
    op.create_index("ix_jobs_family_created", "jobs", ["family", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_family_created", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("shift")
        batch_op.drop_column("guidance")
        batch_op.drop_column("prediction")
        batch_op.drop_column("family")
