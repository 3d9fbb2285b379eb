"""grid_written_at: when a sweep's grid was last written, as the newest finish it shows

Set by the worker that ends a sweep, only if null or older than the sweep's newest finished
job, so two workers ending the last two jobs at once write the grid once, and a ``retry`` that
completes the sweep later writes it again. Earlier sweeps start with none.

Revision ID: 0010_grid_written
Revises: 0009_executor
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_grid_written"
down_revision = "0009_executor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grid_written_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("grid_written_at")
