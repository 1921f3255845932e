"""Identity is the person; the look descriptor's score is "look".

Why: until now the score named identity was a colour, texture and shape similarity (or CLIP/DINO cosine) between
a take and the references. On real photographs it could not tell the same person in another photo from another
person in the same photo, so identity is now a face recognizer's verdict, and that older measure is kept, under
its own name, as "look" (costume, colour and lighting consistency). Rows scored as identity without a face model
(their embedder id has no "+face model" part) are relabelled "look" here, so the two are never mixed; identity
made with a face model stays identity.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_LOOK = "metric IN ('identity', 'look', 'continuity', 'stability')"
WITHOUT_LOOK = "metric IN ('identity', 'continuity', 'stability')"


def upgrade() -> None:
    with op.batch_alter_table('take_scores', recreate='always') as batch_op:
        batch_op.drop_constraint(op.f('ck_take_scores_metric_known'), type_='check')
        batch_op.create_check_constraint('metric_known', WITH_LOOK)
    op.execute("UPDATE take_scores SET metric = 'look' WHERE metric = 'identity' AND instr(embedder, '+') = 0")


def downgrade() -> None:
    op.execute("DELETE FROM take_scores WHERE metric = 'identity' AND instr(embedder, '+') = 0")
    op.execute("UPDATE take_scores SET metric = 'identity' WHERE metric = 'look'")
    with op.batch_alter_table('take_scores', recreate='always') as batch_op:
        batch_op.drop_constraint(op.f('ck_take_scores_metric_known'), type_='check')
        batch_op.create_check_constraint('metric_known', WITHOUT_LOOK)
