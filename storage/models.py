"""The studio's tables.

What the schema guarantees, whatever code writes to it:

- Every row belongs to exactly one parent, and deleting the parent removes its children
  (project -> characters, shots; character -> reference images; shot -> takes -> jobs) through
  ``ON DELETE CASCADE``; SQLite enforces this only with ``PRAGMA foreign_keys=ON``, which the engine
  in :mod:`storage.db` turns on for every connection.
- Names are unique where users expect them to be: one project per name, one character per name within a
  project, compared on ``name_key`` (the case-folded name), so "Mara" and "mara" collide.
- Shots are ordered: ``(project_id, position)`` is unique. Takes are numbered: ``(shot_id, take_number)``
  is unique. A shot has at most one approved take (a partial unique index on ``takes.shot_id`` where
  ``approved``), and the approval cannot point at another shot's take because it is stored on the take.
- Durations are positive and at most ten minutes, fps within 1..120, sizes positive, statuses from a
  closed set.
- Media files are referenced by their SHA-256 through ``media_objects``; a media row cannot be deleted
  while anything references it (``ON DELETE RESTRICT``), so files are collected only when orphaned.

The module is longer than most here on purpose: it is the whole schema, every table with its constraints, read
in one place and compared as one by the migrations' tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

MAX_SHOT_SECONDS = 600.0
MAX_CROSSFADE_SECONDS = 60.0
MAX_CARD_TEXT = 500
TAKE_STATUSES = ("queued", "running", "done", "failed", "cancelled")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
TAKE_INPUT_ROLES = ("keyframe", "last_frame", "reference")
SCORE_METRICS = ("identity", "look", "continuity", "stability")
SHOT_PICTURE_ROLES = ("first", "last")  # a shot's first frame (its keyframe) and its last frame
SHEET_VIEWS = ("front", "three-quarter", "profile", "full-figure")  # views of a character's sheet
PICTURE_ROLES = SHOT_PICTURE_ROLES + SHEET_VIEWS
PICTURE_INPUT_ROLES = ("subject", "scene")

# Stable constraint names make Alembic migrations (batch mode on SQLite) deterministic.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back as aware datetimes (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class MediaObject(Base):
    """One file in the content-addressed store, named by the SHA-256 of its bytes."""

    __tablename__ = "media_objects"
    __table_args__ = (
        CheckConstraint("length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'", name="sha256_hex"),
        CheckConstraint("byte_size >= 0", name="byte_size_nonnegative"),
    )

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    extension: Mapped[str] = mapped_column(String(16))
    byte_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Rows users and pages hold on to by id (a project open in another tab, a take id typed on the command line) get
# ids that are never handed out again once deleted, so a stale id finds nothing instead of another row.
IDS_NEVER_REUSED = {"sqlite_autoincrement": True}


def media_fk(ondelete: str = "RESTRICT") -> ForeignKey:
    return ForeignKey("media_objects.sha256", ondelete=ondelete)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("fps >= 1 AND fps <= 120", name="fps_range"),
        CheckConstraint("width > 0 AND height > 0", name="size_positive"),
        CheckConstraint("length(trim(name)) > 0", name="name_not_blank"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), unique=True)
    width: Mapped[int] = mapped_column(default=640)
    height: Mapped[int] = mapped_column(default=384)
    fps: Mapped[int] = mapped_column(default=16)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # When this project was unpacked from a bundle (None for the original): what both copies held then, and one
    # lacks now, was deleted on that side since, and a merge leaves it deleted.
    copied_at: Mapped[datetime | None] = mapped_column(default=None)

    characters: Mapped[list[Character]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True, order_by="Character.id"
    )
    shots: Mapped[list[Shot]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True, order_by="Shot.position"
    )


class Character(Base):
    __tablename__ = "characters"
    __table_args__ = (
        UniqueConstraint("project_id", "name_key", name="uq_characters_project_name"),
        CheckConstraint("length(trim(name)) > 0", name="name_not_blank"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="characters")
    references: Mapped[list[ReferenceImage]] = relationship(
        back_populates="character",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ReferenceImage.position",
    )


class ReferenceImage(Base):
    __tablename__ = "reference_images"
    __table_args__ = (
        UniqueConstraint("character_id", "sha256", name="uq_reference_images_character_sha256"),
        UniqueConstraint("character_id", "position", name="uq_reference_images_character_position"),
        CheckConstraint("width > 0 AND height > 0", name="size_positive"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    character_id: Mapped[int] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(media_fk(), index=True)
    position: Mapped[int]
    original_name: Mapped[str] = mapped_column(String(255), default="")
    width: Mapped[int]
    height: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    character: Mapped[Character] = relationship(back_populates="references")
    media: Mapped[MediaObject] = relationship(lazy="joined")


shot_characters = Table(
    "shot_characters",
    Base.metadata,
    Column("shot_id", ForeignKey("shots.id", ondelete="CASCADE"), primary_key=True),
    Column("character_id", ForeignKey("characters.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Shot(Base):
    """A line of the storyboard.

    The keyframe comes from at most one of an uploaded image (``keyframe_sha256``) or a character's first
    reference image (``keyframe_character_id``); ``continue_from_previous`` asks the renderer to start from
    the previous shot's approved take instead, with the keyframe as the fallback for the first shot.
    """

    __tablename__ = "shots"
    __table_args__ = (
        UniqueConstraint("project_id", "position", name="uq_shots_project_position"),
        CheckConstraint(f"duration > 0 AND duration <= {MAX_SHOT_SECONDS}", name="duration_range"),
        CheckConstraint("length(trim(prompt)) > 0", name="prompt_not_blank"),
        CheckConstraint("keyframe_sha256 IS NULL OR keyframe_character_id IS NULL", name="one_keyframe_source"),
        CheckConstraint(f"cut_in >= 0 AND cut_in < {MAX_SHOT_SECONDS}", name="cut_in_range"),
        CheckConstraint("cut_out IS NULL OR cut_out > cut_in", name="cut_out_after_in"),
        CheckConstraint(
            f"cut_crossfade IS NULL OR (cut_crossfade >= 0 AND cut_crossfade <= {MAX_CROSSFADE_SECONDS})",
            name="cut_crossfade_range",
        ),
        CheckConstraint(f"length(cut_title) <= {MAX_CARD_TEXT}", name="cut_title_length"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    position: Mapped[int]
    scene: Mapped[str] = mapped_column(String(50), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    prompt: Mapped[str] = mapped_column(Text)
    duration: Mapped[float] = mapped_column(Float)
    camera: Mapped[str] = mapped_column(String(500), default="static")
    keyframe_sha256: Mapped[str | None] = mapped_column(media_fk(), index=True)
    keyframe_character_id: Mapped[int | None] = mapped_column(
        ForeignKey("characters.id", ondelete="SET NULL"), index=True
    )
    continue_from_previous: Mapped[bool] = mapped_column(Boolean, default=False)
    # The frame the shot ends on, for backends that take one: a picture of its own, or (``last_frame_from_next``)
    # the next shot's first frame, so the cut between them is bridged.
    last_frame_sha256: Mapped[str | None] = mapped_column(media_fk(), index=True)
    last_frame_from_next: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("0"))
    # Set when the take this shot continues from changed (another take was approved upstream) after the
    # shot's takes were rendered; cleared when a take rendered from the current source finishes.
    stale: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("0"))
    # The shot in the cut: the part of its approved take the film uses (seconds into the take; no out point: to
    # its end), the dissolve into it from what comes before (None: the export's crossfade; 0: a hard cut), and
    # the text of a title card placed before it ("": none). They move with the shot when it moves.
    cut_in: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    cut_out: Mapped[float | None] = mapped_column(Float)
    cut_crossfade: Mapped[float | None] = mapped_column(Float)
    cut_title: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(back_populates="shots")
    characters: Mapped[list[Character]] = relationship(secondary=shot_characters, order_by="Character.id")
    keyframe_character: Mapped[Character | None] = relationship(foreign_keys=[keyframe_character_id])
    keyframe: Mapped[MediaObject | None] = relationship(lazy="joined", foreign_keys=[keyframe_sha256])
    last_frame: Mapped[MediaObject | None] = relationship(foreign_keys=[last_frame_sha256])
    pictures: Mapped[list[PictureTake]] = relationship(
        back_populates="shot", passive_deletes=True, order_by="(PictureTake.role, PictureTake.number)"
    )
    takes: Mapped[list[Take]] = relationship(
        back_populates="shot", cascade="all, delete-orphan", passive_deletes=True, order_by="Take.take_number"
    )


class Take(Base):
    """One rendering of a shot, with everything needed to make it again.

    ``params`` holds every generation parameter as the backend received it; ``provenance`` the model
    source and revision, load spec, library versions and device; ``timings`` seconds per stage.
    """

    __tablename__ = "takes"
    __table_args__ = (
        UniqueConstraint("shot_id", "take_number", name="uq_takes_shot_take_number"),
        CheckConstraint("take_number >= 1", name="take_number_positive"),
        CheckConstraint(_in("status", TAKE_STATUSES), name="status_known"),
        CheckConstraint("fps >= 1 AND fps <= 120", name="fps_range"),
        CheckConstraint("width > 0 AND height > 0", name="size_positive"),
        CheckConstraint("num_frames > 0", name="num_frames_positive"),
        CheckConstraint("NOT approved OR status = 'done'", name="approved_only_when_done"),
        Index("uq_takes_one_approved_per_shot", "shot_id", unique=True, sqlite_where=text("approved")),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"))
    take_number: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    backend: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int]
    prompt: Mapped[str] = mapped_column(Text)
    width: Mapped[int]
    height: Mapped[int]
    fps: Mapped[int]
    num_frames: Mapped[int]
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    video_sha256: Mapped[str | None] = mapped_column(media_fk(), index=True)
    thumbnail_sha256: Mapped[str | None] = mapped_column(media_fk(), index=True)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    # The previous shot's take whose last frame started this one (shots that continue from the previous).
    source_take_id: Mapped[int | None] = mapped_column(ForeignKey("takes.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    shot: Mapped[Shot] = relationship(back_populates="takes")
    video: Mapped[MediaObject | None] = relationship(foreign_keys=[video_sha256], lazy="joined")
    thumbnail: Mapped[MediaObject | None] = relationship(foreign_keys=[thumbnail_sha256], lazy="joined")
    job: Mapped[Job | None] = relationship(back_populates="take", cascade="all, delete-orphan", passive_deletes=True)
    inputs: Mapped[list[TakeInput]] = relationship(
        back_populates="take", cascade="all, delete-orphan", passive_deletes=True, order_by="TakeInput.position"
    )
    scores: Mapped[list[TakeScore]] = relationship(
        back_populates="take", cascade="all, delete-orphan", passive_deletes=True, order_by="TakeScore.id"
    )


class PictureTake(Base):
    """One drawing of a picture by a keyframe backend, with everything needed to draw it again: a candidate for a
    shot's first or last frame (``shot_id``, role ``first``/``last``), or a view of a character's sheet
    (``character_id``, role one of :data:`SHEET_VIEWS`).

    Rendered through the same queue as video takes (a :class:`Job` names it). ``params`` holds every drawing
    parameter and the input pictures by hash; ``scores`` the identity (and continuity) it scored when drawn.
    A shot has at most one approved picture per role; approving one makes it the shot's keyframe (or last frame).
    A character's views are ``approved`` when kept as references; any number may be.
    """

    __tablename__ = "picture_takes"
    __table_args__ = (
        CheckConstraint("(shot_id IS NULL) != (character_id IS NULL)", name="one_owner"),
        CheckConstraint(_in("role", PICTURE_ROLES), name="role_known"),
        CheckConstraint(f"(shot_id IS NULL) OR {_in('role', SHOT_PICTURE_ROLES)}", name="shot_pictures_are_frames"),
        CheckConstraint(f"(character_id IS NULL) OR {_in('role', SHEET_VIEWS)}", name="character_pictures_are_views"),
        CheckConstraint(_in("status", TAKE_STATUSES), name="status_known"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("width > 0 AND height > 0", name="size_positive"),
        CheckConstraint("NOT approved OR status = 'done'", name="approved_only_when_done"),
        Index(
            "uq_picture_takes_shot_role_number",
            "shot_id",
            "role",
            "number",
            unique=True,
            sqlite_where=text("shot_id IS NOT NULL"),
        ),
        Index(
            "uq_picture_takes_character_role_number",
            "character_id",
            "role",
            "number",
            unique=True,
            sqlite_where=text("character_id IS NOT NULL"),
        ),
        Index(
            "uq_picture_takes_one_approved_per_shot_role",
            "shot_id",
            "role",
            unique=True,
            sqlite_where=text("approved AND shot_id IS NOT NULL"),
        ),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shot_id: Mapped[int | None] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"))
    character_id: Mapped[int | None] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    number: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    backend: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int]
    prompt: Mapped[str] = mapped_column(Text)
    width: Mapped[int]
    height: Mapped[int]
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image_sha256: Mapped[str | None] = mapped_column(media_fk(), index=True)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    shot: Mapped[Shot | None] = relationship(back_populates="pictures")
    character: Mapped[Character | None] = relationship()
    image: Mapped[MediaObject | None] = relationship(lazy="joined")
    job: Mapped[Job | None] = relationship(
        back_populates="picture_take", cascade="all, delete-orphan", passive_deletes=True
    )
    inputs: Mapped[list[PictureInput]] = relationship(
        back_populates="picture_take",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="PictureInput.position",
    )


class PictureInput(Base):
    """A picture a :class:`PictureTake` was drawn from, by content hash: a character's reference (``subject``) or
    the location or neighbouring keyframe it is set in (``scene``). Kept so the drawing can be repeated and its
    pictures stay stored while it exists."""

    __tablename__ = "picture_inputs"
    __table_args__ = (
        UniqueConstraint("picture_take_id", "position", name="uq_picture_inputs_picture_take_position"),
        CheckConstraint(_in("role", PICTURE_INPUT_ROLES), name="role_known"),
        CheckConstraint("position >= 0", name="position_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    picture_take_id: Mapped[int] = mapped_column(ForeignKey("picture_takes.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(media_fk(), index=True)
    character_id: Mapped[int | None] = mapped_column(ForeignKey("characters.id", ondelete="SET NULL"))

    picture_take: Mapped[PictureTake] = relationship(back_populates="inputs")


class Job(Base):
    """One entry of the render queue: the work of producing one take.

    Jobs run in ``(priority DESC, position ASC)`` order. ``attempts`` counts starts, so a job found
    ``running`` after a crash can be re-queued once and failed the next time. Progress is written here by
    the worker and read by the UI and ``status --json``; ``cancel_requested`` is how a cancel reaches a
    running job's pipeline.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state_known"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint("progress_step >= 0 AND progress_total >= 0", name="progress_nonnegative"),
        CheckConstraint("(take_id IS NULL) != (picture_take_id IS NULL)", name="renders_one_thing"),
        Index("ix_jobs_queue_order", "state", text("priority DESC"), "position"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    take_id: Mapped[int | None] = mapped_column(ForeignKey("takes.id", ondelete="CASCADE"), unique=True)
    picture_take_id: Mapped[int | None] = mapped_column(
        ForeignKey("picture_takes.id", ondelete="CASCADE"), unique=True
    )
    state: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(default=0)
    position: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    device: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(128))
    progress_stage: Mapped[str] = mapped_column(String(64), default="")
    progress_step: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]

    take: Mapped[Take | None] = relationship(back_populates="job")
    picture_take: Mapped[PictureTake | None] = relationship(back_populates="job")

    @property
    def work(self) -> Take | PictureTake:
        """What this job renders: a take of a video, or a take of a picture."""
        work = self.take if self.take_id is not None else self.picture_take
        assert work is not None
        return work


class TakeInput(Base):
    """An image a take was rendered from, by content hash: its keyframe, last frame or a character reference.

    Recorded when the take's job starts (chained keyframes are only known then), so "render again" can use
    exactly the same pictures, and so those pictures stay in the media store as long as the take exists.
    """

    __tablename__ = "take_inputs"
    __table_args__ = (
        UniqueConstraint("take_id", "role", "position", name="uq_take_inputs_take_role_position"),
        CheckConstraint(_in("role", TAKE_INPUT_ROLES), name="role_known"),
        CheckConstraint("position >= 0", name="position_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    take_id: Mapped[int] = mapped_column(ForeignKey("takes.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(media_fk(), index=True)
    character_id: Mapped[int | None] = mapped_column(ForeignKey("characters.id", ondelete="SET NULL"))

    take: Mapped[Take] = relationship(back_populates="inputs")
    media: Mapped[MediaObject] = relationship(lazy="joined")


class TakeScore(Base):
    """One consistency score of a take, by one embedder.

    Scores are comparable only within one embedder (``embedder`` holds its id, for example the offline
    descriptor's version or a CLIP model's folder and config hash), so the embedder is part of the key.
    ``value`` is in 0..1; ``details`` keeps the parts (per character, per component) the value came from.
    """

    __tablename__ = "take_scores"
    __table_args__ = (
        UniqueConstraint("take_id", "embedder", "metric", name="uq_take_scores_take_embedder_metric"),
        CheckConstraint(_in("metric", SCORE_METRICS), name="metric_known"),
        CheckConstraint("value >= 0 AND value <= 1", name="value_range"),
        Index("ix_take_scores_embedder_metric_value", "embedder", "metric", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    take_id: Mapped[int] = mapped_column(ForeignKey("takes.id", ondelete="CASCADE"), index=True)
    embedder: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    take: Mapped[Take] = relationship(back_populates="scores")
