"""Initial schema: media, projects, characters, reference images, shots and takes.

Why: the first revision of the studio's data; every later schema change is a migration on top of it, so a
database made by any released version can be upgraded in place.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 06:36:04.165290
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('media_objects',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('extension', sa.String(length=16), nullable=False),
    sa.Column('byte_size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'", name=op.f('ck_media_objects_sha256_hex')),
    sa.CheckConstraint('byte_size >= 0', name=op.f('ck_media_objects_byte_size_nonnegative')),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_media_objects'))
    )
    op.create_table('projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_key', sa.String(length=200), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('fps', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('fps >= 1 AND fps <= 120', name=op.f('ck_projects_fps_range')),
    sa.CheckConstraint('length(trim(name)) > 0', name=op.f('ck_projects_name_not_blank')),
    sa.CheckConstraint('width > 0 AND height > 0', name=op.f('ck_projects_size_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('name_key', name=op.f('uq_projects_name_key'))
    )
    op.create_table('characters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_key', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(trim(name)) > 0', name=op.f('ck_characters_name_not_blank')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_characters_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_characters')),
    sa.UniqueConstraint('project_id', 'name_key', name='uq_characters_project_name')
    )
    with op.batch_alter_table('characters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_characters_project_id'), ['project_id'], unique=False)

    op.create_table('reference_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('character_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('original_name', sa.String(length=255), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('width > 0 AND height > 0', name=op.f('ck_reference_images_size_positive')),
    sa.ForeignKeyConstraint(['character_id'], ['characters.id'], name=op.f('fk_reference_images_character_id_characters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sha256'], ['media_objects.sha256'], name=op.f('fk_reference_images_sha256_media_objects'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reference_images')),
    sa.UniqueConstraint('character_id', 'position', name='uq_reference_images_character_position'),
    sa.UniqueConstraint('character_id', 'sha256', name='uq_reference_images_character_sha256')
    )
    with op.batch_alter_table('reference_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reference_images_sha256'), ['sha256'], unique=False)

    op.create_table('shots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('scene', sa.String(length=50), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('duration', sa.Float(), nullable=False),
    sa.Column('camera', sa.String(length=500), nullable=False),
    sa.Column('keyframe_sha256', sa.String(length=64), nullable=True),
    sa.Column('keyframe_character_id', sa.Integer(), nullable=True),
    sa.Column('continue_from_previous', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('duration > 0 AND duration <= 600.0', name=op.f('ck_shots_duration_range')),
    sa.CheckConstraint('keyframe_sha256 IS NULL OR keyframe_character_id IS NULL', name=op.f('ck_shots_one_keyframe_source')),
    sa.CheckConstraint('length(trim(prompt)) > 0', name=op.f('ck_shots_prompt_not_blank')),
    sa.ForeignKeyConstraint(['keyframe_character_id'], ['characters.id'], name=op.f('fk_shots_keyframe_character_id_characters'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['keyframe_sha256'], ['media_objects.sha256'], name=op.f('fk_shots_keyframe_sha256_media_objects'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_shots_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shots')),
    sa.UniqueConstraint('project_id', 'position', name='uq_shots_project_position')
    )
    with op.batch_alter_table('shots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shots_keyframe_character_id'), ['keyframe_character_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shots_keyframe_sha256'), ['keyframe_sha256'], unique=False)

    op.create_table('shot_characters',
    sa.Column('shot_id', sa.Integer(), nullable=False),
    sa.Column('character_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['character_id'], ['characters.id'], name=op.f('fk_shot_characters_character_id_characters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shot_id'], ['shots.id'], name=op.f('fk_shot_characters_shot_id_shots'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('shot_id', 'character_id', name=op.f('pk_shot_characters'))
    )
    with op.batch_alter_table('shot_characters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shot_characters_character_id'), ['character_id'], unique=False)

    op.create_table('takes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shot_id', sa.Integer(), nullable=False),
    sa.Column('take_number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('backend', sa.String(length=64), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('fps', sa.Integer(), nullable=False),
    sa.Column('num_frames', sa.Integer(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('video_sha256', sa.String(length=64), nullable=True),
    sa.Column('thumbnail_sha256', sa.String(length=64), nullable=True),
    sa.Column('timings', sa.JSON(), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('approved', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("NOT approved OR status = 'done'", name=op.f('ck_takes_approved_only_when_done')),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'cancelled')", name=op.f('ck_takes_status_known')),
    sa.CheckConstraint('fps >= 1 AND fps <= 120', name=op.f('ck_takes_fps_range')),
    sa.CheckConstraint('num_frames > 0', name=op.f('ck_takes_num_frames_positive')),
    sa.CheckConstraint('take_number >= 1', name=op.f('ck_takes_take_number_positive')),
    sa.CheckConstraint('width > 0 AND height > 0', name=op.f('ck_takes_size_positive')),
    sa.ForeignKeyConstraint(['shot_id'], ['shots.id'], name=op.f('fk_takes_shot_id_shots'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['thumbnail_sha256'], ['media_objects.sha256'], name=op.f('fk_takes_thumbnail_sha256_media_objects'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['video_sha256'], ['media_objects.sha256'], name=op.f('fk_takes_video_sha256_media_objects'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_takes')),
    sa.UniqueConstraint('shot_id', 'take_number', name='uq_takes_shot_take_number')
    )
    with op.batch_alter_table('takes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_takes_thumbnail_sha256'), ['thumbnail_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_takes_video_sha256'), ['video_sha256'], unique=False)
        batch_op.create_index('uq_takes_one_approved_per_shot', ['shot_id'], unique=True, sqlite_where=sa.text('approved'))



def downgrade() -> None:
    with op.batch_alter_table('takes', schema=None) as batch_op:
        batch_op.drop_index('uq_takes_one_approved_per_shot', sqlite_where=sa.text('approved'))
        batch_op.drop_index(batch_op.f('ix_takes_video_sha256'))
        batch_op.drop_index(batch_op.f('ix_takes_thumbnail_sha256'))

    op.drop_table('takes')
    with op.batch_alter_table('shot_characters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shot_characters_character_id'))

    op.drop_table('shot_characters')
    with op.batch_alter_table('shots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shots_keyframe_sha256'))
        batch_op.drop_index(batch_op.f('ix_shots_keyframe_character_id'))

    op.drop_table('shots')
    with op.batch_alter_table('reference_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reference_images_sha256'))

    op.drop_table('reference_images')
    with op.batch_alter_table('characters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_characters_project_id'))

    op.drop_table('characters')
    op.drop_table('projects')
    op.drop_table('media_objects')
