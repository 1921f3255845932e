"""When a project was unpacked from a bundle.

Why: merging a bundle back has to tell a shot, take, character or reference image added on the other side from
one deleted on this side since the copy was made; both are "in the bundle, not here". What was created before the
copy existed on both sides, so if one side lacks it now, that side deleted it. Originals have no copy time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('projects', sa.Column('copied_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('projects', recreate='always', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_column('copied_at')
