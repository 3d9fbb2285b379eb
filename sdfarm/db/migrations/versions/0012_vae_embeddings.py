"""VAE and embeddings (issue 11): the VAE file a job renders with, its hash, and the textual
inversion embeddings its prompts use (A1111's "TI hashes")

Earlier jobs get "" in all three: they rendered with their model's own VAE and no embeddings.

Revision ID: 0012_vae_embeddings
Revises: 0010_grid_written
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_vae_embeddings"
down_revision = "0011_loras"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vae", sa.String(length=1024), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("vae_hash", sa.String(length=16), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("ti_hashes", sa.Text(), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("ti_hashes")
        batch_op.drop_column("vae_hash")
        batch_op.drop_column("vae")
