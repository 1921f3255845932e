"""Consistency scores per take.

Why: takes are scored for identity, continuity and stability when they finish, so that a shot's takes can be
ranked and the best suggested for approval. A score is only comparable with scores from the same embedder,
so the embedder's id is part of each row's key; the index serves "rank by metric under one embedder".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:02:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('take_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('take_id', sa.Integer(), nullable=False),
    sa.Column('embedder', sa.String(length=200), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("metric IN ('identity', 'continuity', 'stability')", name=op.f('ck_take_scores_metric_known')),
    sa.CheckConstraint('value >= 0 AND value <= 1', name=op.f('ck_take_scores_value_range')),
    sa.ForeignKeyConstraint(['take_id'], ['takes.id'], name=op.f('fk_take_scores_take_id_takes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_take_scores')),
    sa.UniqueConstraint('take_id', 'embedder', 'metric', name='uq_take_scores_take_embedder_metric')
    )
    op.create_index('ix_take_scores_embedder_metric_value', 'take_scores', ['embedder', 'metric', 'value'], unique=False)
    op.create_index('ix_take_scores_take_id', 'take_scores', ['take_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_take_scores_take_id', table_name='take_scores')
    op.drop_index('ix_take_scores_embedder_metric_value', table_name='take_scores')
    op.drop_table('take_scores')
