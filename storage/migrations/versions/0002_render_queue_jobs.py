"""Render queue: a job row per take.

Why: renders run for hours and must survive crashes and restarts, so the queue lives in the database next
to the takes it produces instead of in a worker's memory. The queue order index serves "next job to run"
without a table scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 08:05:46.164307
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('take_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('worker', sa.String(length=128), nullable=True),
    sa.Column('progress_stage', sa.String(length=64), nullable=False),
    sa.Column('progress_step', sa.Integer(), nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed', 'cancelled')", name=op.f('ck_jobs_state_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_jobs_attempts_nonnegative')),
    sa.CheckConstraint('progress_step >= 0 AND progress_total >= 0', name=op.f('ck_jobs_progress_nonnegative')),
    sa.ForeignKeyConstraint(['take_id'], ['takes.id'], name=op.f('fk_jobs_take_id_takes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('take_id', name=op.f('uq_jobs_take_id'))
    )
    op.create_index('ix_jobs_queue_order', 'jobs', ['state', sa.text('priority DESC'), 'position'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_queue_order', table_name='jobs')
    op.drop_table('jobs')
