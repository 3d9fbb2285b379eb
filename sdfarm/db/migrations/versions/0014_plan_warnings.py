"""plan_warnings: what planning warned about a sweep (a prompt chunked past 75 tokens or cut by
T5, emphasis a family does not read, repeated seeds), one warning a line

Printed when the sweep was planned, and again by ``watch``, so a farm sweep submitted from a
script still says it. Earlier sweeps start with none.

Revision ID: 0014_plan_warnings
Revises: 0013_hires_img2img
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_plan_warnings"
down_revision = "0013_hires_img2img"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_warnings", sa.Text(), server_default="",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("plan_warnings")
