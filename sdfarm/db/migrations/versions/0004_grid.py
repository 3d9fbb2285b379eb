"""grid coordinates beyond x, y, z: prompt, seed and extra axes

Revision ID: 0004_grid
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_grid"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grid_prompt", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("grid_seed", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("grid_extra", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("grid_extra")
        batch_op.drop_column("grid_seed")
        batch_op.drop_column("grid_prompt")
