"""Take inputs, chaining and stale shots.

Why: the render queue resolves a take's pictures when its job starts (a shot that continues from the previous
one takes that shot's last frame), so the inputs are recorded per take by content hash, keeping those files
in the media store and letting "render again" use exactly the same pictures. A take remembers which take it
continued from, and a shot is marked stale when the take it continues from is replaced upstream.

SQLite cannot add a foreign key in place, so the takes table is rebuilt (batch mode); its partial unique
index (one approved take per shot) is reflected with its WHERE clause and recreated, which a test checks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:37:06.651997
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('take_inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('take_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('character_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("role IN ('keyframe', 'last_frame', 'reference')", name=op.f('ck_take_inputs_role_known')),
    sa.CheckConstraint('position >= 0', name=op.f('ck_take_inputs_position_nonnegative')),
    sa.ForeignKeyConstraint(['character_id'], ['characters.id'], name=op.f('fk_take_inputs_character_id_characters'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sha256'], ['media_objects.sha256'], name=op.f('fk_take_inputs_sha256_media_objects'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['take_id'], ['takes.id'], name=op.f('fk_take_inputs_take_id_takes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_take_inputs')),
    sa.UniqueConstraint('take_id', 'role', 'position', name='uq_take_inputs_take_role_position')
    )
    op.create_index('ix_take_inputs_sha256', 'take_inputs', ['sha256'], unique=False)
    op.add_column('shots', sa.Column('stale', sa.Boolean(), server_default=sa.text('0'), nullable=False))
    with op.batch_alter_table('takes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_take_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_takes_source_take_id'), ['source_take_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_takes_source_take_id_takes'), 'takes', ['source_take_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('takes', schema=None) as batch_op:
        batch_op.drop_constraint('fk_takes_source_take_id_takes', type_='foreignkey')
        batch_op.drop_index('ix_takes_source_take_id')
        batch_op.drop_column('source_take_id')
    with op.batch_alter_table('shots', schema=None) as batch_op:
        batch_op.drop_column('stale')
    op.drop_index('ix_take_inputs_sha256', table_name='take_inputs')
    op.drop_table('take_inputs')
