"""The cut kept with the project: each shot's in and out points, the dissolve into it and a title card before it.

Why: trims, crossfades and title cards were options of one export, typed again for the next. They are now the
shot's own (``cut_in``, ``cut_out``, ``cut_crossfade``, ``cut_title``), so the edit survives a restart, travels in
bundles and moves with the shot when the storyboard is reordered. ``cut_crossfade`` NULL means the export's
crossfade, 0 a hard cut.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shots", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("cut_in", sa.Float(), server_default=sa.text("0"), nullable=False))
        batch_op.add_column(sa.Column("cut_out", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("cut_crossfade", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("cut_title", sa.Text(), server_default=sa.text("''"), nullable=False))
        batch_op.create_check_constraint("cut_in_range", "cut_in >= 0 AND cut_in < 600.0")
        batch_op.create_check_constraint("cut_out_after_in", "cut_out IS NULL OR cut_out > cut_in")
        batch_op.create_check_constraint(
            "cut_crossfade_range", "cut_crossfade IS NULL OR (cut_crossfade >= 0 AND cut_crossfade <= 60.0)"
        )
        batch_op.create_check_constraint("cut_title_length", "length(cut_title) <= 500")


def downgrade() -> None:
    with op.batch_alter_table("shots", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(op.f("ck_shots_cut_title_length"), type_="check")
        batch_op.drop_constraint(op.f("ck_shots_cut_crossfade_range"), type_="check")
        batch_op.drop_constraint(op.f("ck_shots_cut_out_after_in"), type_="check")
        batch_op.drop_constraint(op.f("ck_shots_cut_in_range"), type_="check")
        batch_op.drop_column("cut_title")
        batch_op.drop_column("cut_crossfade")
        batch_op.drop_column("cut_out")
        batch_op.drop_column("cut_in")
