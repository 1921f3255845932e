"""Ids of projects, characters, reference images, shots, takes and jobs are never reused.

Why: SQLite hands the id of the last deleted row to the next insert unless a table is AUTOINCREMENT. A page
open in another tab, a notebook's project handle or a take id typed on the command line could then act on a
different row than the one it named. SQLite can only make a table AUTOINCREMENT by rebuilding it: each table is
copied with its rows, constraints and indexes (ids kept), which also seeds SQLite's counter from the highest id.
The partial and expression indexes are created again by hand, since a rebuild cannot read them back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 11:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('projects', 'characters', 'reference_images', 'shots', 'takes', 'jobs')


def _indexes_by_hand() -> None:
    op.create_index('uq_takes_one_approved_per_shot', 'takes', ['shot_id'], unique=True, sqlite_where=sa.text('approved'))
    op.create_index('ix_jobs_queue_order', 'jobs', ['state', sa.text('priority DESC'), 'position'], unique=False)


def _rebuild(autoincrement: bool) -> None:
    op.drop_index('uq_takes_one_approved_per_shot', table_name='takes')
    op.drop_index('ix_jobs_queue_order', table_name='jobs')
    for table in TABLES:
        with op.batch_alter_table(table, recreate='always', table_kwargs={'sqlite_autoincrement': autoincrement}):
            pass
    _indexes_by_hand()


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
