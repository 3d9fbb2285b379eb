"""noise controls: variation seed, its strength and ENSD on every job

Earlier jobs get 0, 0.0 and 0: what they were rendered with (no variation seed, no delta).

Revision ID: 0007_noise
Revises: 0006_sampling
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_noise"
down_revision = "0006_sampling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subseed", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("subseed_strength", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("ensd", sa.BigInteger(), nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("ensd")
        batch_op.drop_column("subseed_strength")
        batch_op.drop_column("subseed")
