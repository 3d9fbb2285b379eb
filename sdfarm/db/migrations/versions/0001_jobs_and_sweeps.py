"""jobs and sweeps

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 00:41:43.734391
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('job_file_path', sa.String(length=1024), nullable=True),
    sa.Column('job_file_text', sa.Text(), nullable=True),
    sa.Column('output_dir', sa.String(length=1024), nullable=False),
    sa.Column('sweep_seed', sa.BigInteger(), nullable=True),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('allow_pickle', sa.Boolean(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('axes', sa.JSON(), nullable=True),
    sa.Column('rerun_of_job_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweeps_rerun_of_job_id'), ['rerun_of_job_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'done', 'failed', 'canceled', name='jobstatus', native_enum=False, length=16), nullable=False),
    sa.Column('model', sa.String(length=1024), nullable=False),
    sa.Column('model_hash', sa.String(length=16), nullable=True),
    sa.Column('model_config', sa.String(length=1024), nullable=True),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('negative_prompt', sa.Text(), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('sampler', sa.String(length=64), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('cfg', sa.Float(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('clip_skip', sa.Integer(), nullable=False),
    sa.Column('batch_index', sa.Integer(), nullable=False),
    sa.Column('grid_x', sa.Integer(), nullable=True),
    sa.Column('grid_y', sa.Integer(), nullable=True),
    sa.Column('grid_z', sa.Integer(), nullable=True),
    sa.Column('pass_id', sa.String(length=36), nullable=True),
    sa.Column('pass_index', sa.Integer(), nullable=True),
    sa.Column('pass_size', sa.Integer(), nullable=True),
    sa.Column('threads', sa.Integer(), nullable=True),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('output_path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('render_seconds', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('reused_from_job_id', sa.Integer(), nullable=True),
    sa.Column('claim_token', sa.String(length=36), nullable=True),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim_token', ['claim_token'], unique=False)
        batch_op.create_index('ix_jobs_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_jobs_key_status', ['key', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_pass_id'), ['pass_id'], unique=False)
        batch_op.create_index('ix_jobs_seed', ['seed'], unique=False)
        batch_op.create_index('ix_jobs_status_lease', ['status', 'lease_until'], unique=False)
        batch_op.create_index('ix_jobs_sweep_status', ['sweep_id', 'status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_sweep_status')
        batch_op.drop_index('ix_jobs_status_lease')
        batch_op.drop_index('ix_jobs_seed')
        batch_op.drop_index(batch_op.f('ix_jobs_pass_id'))
        batch_op.drop_index('ix_jobs_key_status')
        batch_op.drop_index('ix_jobs_created_at')
        batch_op.drop_index('ix_jobs_claim_token')

    op.drop_table('jobs')
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweeps_rerun_of_job_id'))

    op.drop_table('sweeps')
