"""Merge the history, farm and grid branches, so later migrations form one line again.

Revision ID: 0005_merge
Revises: 0002_history, 0003_farm, 0004_grid
"""

revision = "0005_merge"
down_revision = ("0002_history", "0003_farm", "0004_grid")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
