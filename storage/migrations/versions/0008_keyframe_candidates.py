"""Keyframe candidates: pictures drawn from the cast, rendered through the queue, and a shot's last frame.

Why: a shot's first (and last) frame can now be drawn by a keyframe backend from its characters' references.
Each drawing is a take of a picture (``picture_takes``, with its input pictures in ``picture_inputs``), queued,
scored and approved like a video take, so a job renders either a take or a picture take: ``jobs.take_id`` may
be empty when ``jobs.picture_take_id`` is set, never both or neither. Shots gain the frame they end on
(``last_frame_sha256``) or end on the next shot's first frame (``last_frame_from_next``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:30:05.296294
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "picture_takes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shot_id", sa.Integer(), nullable=True),
        sa.Column("character_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("backend", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(character_id IS NULL) OR role IN ('front', 'three-quarter', 'profile', 'full-figure')",
            name=op.f("ck_picture_takes_character_pictures_are_views"),
        ),
        sa.CheckConstraint(
            "(shot_id IS NULL) OR role IN ('first', 'last')", name=op.f("ck_picture_takes_shot_pictures_are_frames")
        ),
        sa.CheckConstraint("NOT approved OR status = 'done'", name=op.f("ck_picture_takes_approved_only_when_done")),
        sa.CheckConstraint(
            "role IN ('first', 'last', 'front', 'three-quarter', 'profile', 'full-figure')",
            name=op.f("ck_picture_takes_role_known"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("ck_picture_takes_status_known"),
        ),
        sa.CheckConstraint("(shot_id IS NULL) != (character_id IS NULL)", name=op.f("ck_picture_takes_one_owner")),
        sa.CheckConstraint("number >= 1", name=op.f("ck_picture_takes_number_positive")),
        sa.CheckConstraint("width > 0 AND height > 0", name=op.f("ck_picture_takes_size_positive")),
        sa.ForeignKeyConstraint(
            ["character_id"],
            ["characters.id"],
            name=op.f("fk_picture_takes_character_id_characters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["image_sha256"],
            ["media_objects.sha256"],
            name=op.f("fk_picture_takes_image_sha256_media_objects"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["shot_id"], ["shots.id"], name=op.f("fk_picture_takes_shot_id_shots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_picture_takes")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("picture_takes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_picture_takes_image_sha256"), ["image_sha256"], unique=False)
        batch_op.create_index(
            "uq_picture_takes_character_role_number",
            ["character_id", "role", "number"],
            unique=True,
            sqlite_where=sa.text("character_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_picture_takes_one_approved_per_shot_role",
            ["shot_id", "role"],
            unique=True,
            sqlite_where=sa.text("approved AND shot_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_picture_takes_shot_role_number",
            ["shot_id", "role", "number"],
            unique=True,
            sqlite_where=sa.text("shot_id IS NOT NULL"),
        )

    op.create_table(
        "picture_inputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("picture_take_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("character_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("role IN ('subject', 'scene')", name=op.f("ck_picture_inputs_role_known")),
        sa.CheckConstraint("position >= 0", name=op.f("ck_picture_inputs_position_nonnegative")),
        sa.ForeignKeyConstraint(
            ["character_id"],
            ["characters.id"],
            name=op.f("fk_picture_inputs_character_id_characters"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["picture_take_id"],
            ["picture_takes.id"],
            name=op.f("fk_picture_inputs_picture_take_id_picture_takes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["media_objects.sha256"],
            name=op.f("fk_picture_inputs_sha256_media_objects"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_picture_inputs")),
        sa.UniqueConstraint("picture_take_id", "position", name="uq_picture_inputs_picture_take_position"),
    )
    with op.batch_alter_table("picture_inputs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_picture_inputs_picture_take_id"), ["picture_take_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_picture_inputs_sha256"), ["sha256"], unique=False)

    op.drop_index("ix_jobs_queue_order", table_name="jobs")  # an expression index: batch mode cannot copy it
    with op.batch_alter_table("jobs", recreate="always", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("picture_take_id", sa.Integer(), nullable=True))
        batch_op.alter_column("take_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_unique_constraint(batch_op.f("uq_jobs_picture_take_id"), ["picture_take_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_picture_take_id_picture_takes"),
            "picture_takes",
            ["picture_take_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_check_constraint("renders_one_thing", "(take_id IS NULL) != (picture_take_id IS NULL)")
    op.create_index("ix_jobs_queue_order", "jobs", ["state", sa.text("priority DESC"), "position"], unique=False)

    with op.batch_alter_table("shots", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("last_frame_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("last_frame_from_next", sa.Boolean(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.create_index(batch_op.f("ix_shots_last_frame_sha256"), ["last_frame_sha256"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_shots_last_frame_sha256_media_objects"),
            "media_objects",
            ["last_frame_sha256"],
            ["sha256"],
            ondelete="RESTRICT",
        )


def downgrade() -> None:
    with op.batch_alter_table("shots", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_shots_last_frame_sha256_media_objects"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_shots_last_frame_sha256"))
        batch_op.drop_column("last_frame_from_next")
        batch_op.drop_column("last_frame_sha256")

    op.execute("DELETE FROM jobs WHERE take_id IS NULL")
    op.drop_index("ix_jobs_queue_order", table_name="jobs")
    with op.batch_alter_table("jobs", recreate="always", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_renders_one_thing"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_jobs_picture_take_id_picture_takes"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_jobs_picture_take_id"), type_="unique")
        batch_op.alter_column("take_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("picture_take_id")
    op.create_index("ix_jobs_queue_order", "jobs", ["state", sa.text("priority DESC"), "position"], unique=False)

    with op.batch_alter_table("picture_inputs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_picture_inputs_sha256"))
        batch_op.drop_index(batch_op.f("ix_picture_inputs_picture_take_id"))

    op.drop_table("picture_inputs")
    with op.batch_alter_table("picture_takes", schema=None) as batch_op:
        batch_op.drop_index("uq_picture_takes_shot_role_number", sqlite_where=sa.text("shot_id IS NOT NULL"))
        batch_op.drop_index(
            "uq_picture_takes_one_approved_per_shot_role", sqlite_where=sa.text("approved AND shot_id IS NOT NULL")
        )
        batch_op.drop_index("uq_picture_takes_character_role_number", sqlite_where=sa.text("character_id IS NOT NULL"))
        batch_op.drop_index(batch_op.f("ix_picture_takes_image_sha256"))

    op.drop_table("picture_takes")
