"""LoRA: each job's LoRA set and A1111's "Lora hashes", from its prompt's <lora:...> tags

Earlier jobs get none: sdfarm applied no LoRA before (their tags, if any, were prompt text).

Revision ID: 0011_loras
Revises: 0010_grid_written
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_loras"
down_revision = "0010_grid_written"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("loras", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("lora_hashes", sa.Text(), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lora_hashes")
        batch_op.drop_column("loras")
