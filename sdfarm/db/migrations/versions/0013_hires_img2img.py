"""hires fix and img2img: the hires settings, the init image and its denoise on every job

Earlier jobs get the defaults, which are what they were rendered with: no hires fix (scale 0)
and no init image.

Revision ID: 0013_hires_img2img
Revises: 0012_vae_embeddings
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_hires_img2img"
down_revision = "0012_vae_embeddings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hires_denoise", sa.Float(), nullable=False,
                                      server_default="0.7"))
        batch_op.add_column(sa.Column("hires_scale", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("hires_steps", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("hires_upscaler", sa.String(length=32), nullable=False,
                                      server_default="Latent"))
        batch_op.add_column(sa.Column("init_image", sa.String(length=1024), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("init_image_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("denoise", sa.Float(), nullable=False,
                                      server_default="0.75"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for name in ("denoise", "init_image_hash", "init_image", "hires_upscaler",
                     "hires_steps", "hires_scale", "hires_denoise"):
            batch_op.drop_column(name)
