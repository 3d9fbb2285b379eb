"""sampling controls: the schedule type and eta as columns of their own

A job's ``sampler`` now holds A1111's base sampler name and ``schedule`` its schedule type
("Automatic" by default); ``eta`` is NULL where the sampler's own applies. Rows written before
hold combined names ("DPM++ 2M Karras"): they are split here. The list is written out: a
migration does not import application code.

Revision ID: 0006_sampling
Revises: 0005_merge
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_sampling"
down_revision = "0005_merge"
branch_labels = None
depends_on = None

#: Every combined name sdfarm accepted before this revision: (combined, sampler, schedule).
COMBINED = (
    ("LMS Karras", "LMS", "Karras"),
    ("DPM2 Karras", "DPM2", "Karras"),
    ("DPM2 a Karras", "DPM2 a", "Karras"),
    ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
    ("DPM++ 2M SDE Karras", "DPM++ 2M SDE", "Karras"),
    ("DPM++ SDE Karras", "DPM++ SDE", "Karras"),
)

_SPLIT = sa.text("UPDATE jobs SET sampler = :sampler, schedule = :schedule WHERE sampler = :combined")
_JOIN = sa.text("UPDATE jobs SET sampler = :combined WHERE sampler = :sampler AND schedule = :schedule")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schedule", sa.String(length=32), nullable=False,
                                      server_default="Automatic"))
        batch_op.add_column(sa.Column("eta", sa.Float(), nullable=True))
    op.create_index("ix_jobs_schedule_created", "jobs", ["schedule", "created_at"])
    bind = op.get_bind()
    for combined, sampler, schedule in COMBINED:
        bind.execute(_SPLIT, {"combined": combined, "sampler": sampler, "schedule": schedule})


def downgrade() -> None:
    bind = op.get_bind()
    for combined, sampler, schedule in COMBINED:
        bind.execute(_JOIN, {"combined": combined, "sampler": sampler, "schedule": schedule})
    op.drop_index("ix_jobs_schedule_created", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("eta")
        batch_op.drop_column("schedule")
