"""Takes: the renderings of a shot, their approval, and paging through them.

A take is numbered within its shot (1, 2, 3, ...). It is created ``queued`` with every generation
parameter; it becomes ``done`` only in the transaction that records its video, after the file is in the
media store, so a take that says ``done`` always has its media. A shot has at most one approved take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from projects import queries
from projects.errors import Conflict, InvalidInput
from projects.records import Page, TakeInfo
from projects.studio import Studio
from projects.validation import clean_fps, clean_prompt, clean_seed, clean_side
from storage import media as media_rows
from storage.models import TAKE_STATUSES, Shot, Take, utcnow

VIDEO_EXTENSIONS = {".mp4": "mp4", ".webm": "webm", ".mov": "mov", ".mkv": "mkv"}


def queue_take(
    studio: Studio,
    shot_id: int,
    *,
    backend: str,
    seed: int,
    width: int,
    height: int,
    fps: int,
    num_frames: int,
    params: dict[str, Any] | None = None,
    prompt: str | None = None,
) -> TakeInfo:
    """A new ``queued`` take of a shot with the next free take number."""
    seed = clean_seed(seed)
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InvalidInput(f"must be a whole number of at least 1, got {num_frames!r}", "num_frames")
    if not isinstance(backend, str) or not backend.strip():
        raise InvalidInput("must name a backend", "backend")
    width, height, fps = clean_side(width, "width"), clean_side(height, "height"), clean_fps(fps)
    with studio.write() as session:
        shot = queries.get_shot(session, shot_id)
        last = session.scalar(select(func.max(Take.take_number)).where(Take.shot_id == shot.id))
        take = Take(
            shot_id=shot.id,
            take_number=(last or 0) + 1,
            status="queued",
            backend=backend.strip(),
            seed=seed,
            prompt=clean_prompt(prompt) if prompt is not None else shot.prompt,
            width=width,
            height=height,
            fps=fps,
            num_frames=num_frames,
            params=dict(params or {}),
        )
        session.add(take)
        session.flush()
        return queries.take_info(studio.media, take, shot.position)


def start_take(studio: Studio, take_id: int) -> TakeInfo:
    with studio.write() as session:
        take = queries.get_take(session, take_id)
        if take.status not in ("queued", "running"):
            raise Conflict(f"take {take_id} is {take.status}; only a queued take can start")
        take.status, take.started_at, take.error = "running", utcnow(), None
        session.flush()
        return queries.take_info(studio.media, take, take.shot.position)


def finish_take(
    studio: Studio,
    take_id: int,
    video: Path,
    *,
    thumbnail: Path | None = None,
    timings: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    num_frames: int | None = None,
) -> TakeInfo:
    """Store a take's video (and thumbnail) and mark it ``done`` in one transaction."""
    video = Path(video)
    extension = VIDEO_EXTENSIONS.get(video.suffix.lower())
    if extension is None:
        raise InvalidInput(f"{video.name} is not a video file ({', '.join(VIDEO_EXTENSIONS)})", "video")
    if not video.is_file() or video.stat().st_size == 0:
        raise InvalidInput(f"{video} is missing or empty", "video")
    with studio.write() as session:
        take = queries.get_take(session, take_id)
        if take.status in ("done", "cancelled"):
            raise Conflict(f"take {take_id} is already {take.status}")
        stored = studio.media.put_file(video, extension)
        session.info.setdefault("stored_media", []).append(stored)
        media_rows.register(session, stored)
        take.video_sha256 = stored.sha256
        if thumbnail is not None:
            thumb = studio.media.put_file(Path(thumbnail), Path(thumbnail).suffix.lstrip(".").lower() or "png")
            session.info["stored_media"].append(thumb)
            media_rows.register(session, thumb)
            take.thumbnail_sha256 = thumb.sha256
        take.status, take.finished_at, take.error = "done", utcnow(), None
        if num_frames is not None:
            take.num_frames = num_frames
        take.timings = dict(timings or {})
        take.provenance = dict(provenance or {})
        session.flush()
        session.expire(take, ["video", "thumbnail"])
        return queries.take_info(studio.media, take, take.shot.position)


def fail_take(studio: Studio, take_id: int, error: str, *, status: str = "failed") -> TakeInfo:
    """Mark a take failed (or cancelled) with the reason shown to the user."""
    if status not in ("failed", "cancelled"):
        raise InvalidInput(f"must be 'failed' or 'cancelled', got {status!r}", "status")
    with studio.write() as session:
        take = queries.get_take(session, take_id)
        if take.status == "done":
            raise Conflict(f"take {take_id} is already done")
        take.status, take.error, take.finished_at = status, str(error)[:4000], utcnow()
        session.flush()
        return queries.take_info(studio.media, take, take.shot.position)


def approve_take(studio: Studio, take_id: int) -> TakeInfo:
    """Make this take the shot's approved one (replacing any earlier approval)."""
    with studio.write() as session:
        take = queries.get_take(session, take_id)
        if take.status != "done":
            raise Conflict(f"take {take_id} is {take.status}; only a finished take can be approved")
        if not take.approved:
            session.execute(update(Take).where(Take.shot_id == take.shot_id, Take.approved).values(approved=False))
            take.approved = True
            session.flush()
            refresh_stale(session, take.shot)
        return queries.take_info(studio.media, take, take.shot.position)


def unapprove_take(studio: Studio, take_id: int) -> TakeInfo:
    with studio.write() as session:
        take = queries.get_take(session, take_id)
        take.approved = False
        session.flush()
        refresh_stale(session, take.shot)
        return queries.take_info(studio.media, take, take.shot.position)


def source_take_for(session: Session, shot: Shot) -> Take | None:
    """The take a shot that continues from the previous one starts from: the previous shot's approved take,
    or its newest finished take where none is approved."""
    previous = session.scalar(
        select(Shot).where(Shot.project_id == shot.project_id, Shot.position == shot.position - 1)
    )
    if previous is None:
        return None
    return _current_take(session, previous)


def _current_take(session: Session, shot: Shot) -> Take | None:
    """A shot's approved take, else its newest finished one."""
    return session.scalars(
        select(Take)
        .where(Take.shot_id == shot.id, Take.status == "done")
        .order_by(Take.approved.desc(), Take.finished_at.desc(), Take.take_number.desc())
        .limit(1)
    ).first()


def refresh_stale(session: Session, shot: Shot) -> None:
    """Recompute the stale mark of ``shot`` and of the shot after it (whose source may just have changed).

    A shot that continues from the previous one is stale when its current take (approved, else newest) was
    started from a take other than the one it would start from now.
    """
    following = session.scalar(
        select(Shot).where(Shot.project_id == shot.project_id, Shot.position == shot.position + 1)
    )
    for candidate in (shot, following):
        if candidate is not None:
            candidate.stale = _is_stale(session, candidate)
    session.flush()


def refresh_project_stale(session: Session, project_id: int) -> None:
    """Recompute every shot's stale mark (after shots moved or were deleted, or takes were deleted)."""
    for shot in session.scalars(select(Shot).where(Shot.project_id == project_id)):
        shot.stale = _is_stale(session, shot)
    session.flush()


def _is_stale(session: Session, shot: Shot) -> bool:
    if not shot.continue_from_previous or shot.position == 1:
        return False
    current = _current_take(session, shot)
    source = source_take_for(session, shot)
    # A take that continued another shot's take is stale too when the shot before has no take now (a new shot
    # was inserted before it, or the takes it started from were deleted).
    return current is not None and current.source_take_id != (source.id if source is not None else None)


def delete_take(studio: Studio, take_id: int) -> TakeInfo:
    """Delete a take; its video is removed after the commit unless something else still uses it."""
    with studio.write() as session:
        take = queries.get_take(session, take_id)
        if take.status == "running":
            raise Conflict(f"take {take_id} is rendering; cancel it first")
        info = queries.take_info(studio.media, take, take.shot.position)
        project_id = take.shot.project_id
        session.delete(take)
        session.flush()
        refresh_project_stale(session, project_id)
    return info


def get_take(studio: Studio, take_id: int) -> TakeInfo:
    with studio.read() as session:
        take = queries.get_take(session, take_id)
        return queries.take_info(studio.media, take, take.shot.position)


def list_takes(
    studio: Studio,
    project: str | int,
    *,
    shot_number: int | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> Page[TakeInfo]:
    """One page of a project's takes (or one shot's), in storyboard order, then take number."""
    queries.check_paging(offset, limit)
    if status is not None and status not in TAKE_STATUSES:
        raise InvalidInput(f"must be one of {', '.join(TAKE_STATUSES)}, got {status!r}", "status")
    with studio.read() as session:
        row = queries.find_project(session, project)
        where = [Shot.project_id == row.id]
        if shot_number is not None:
            where.append(Take.shot_id == queries.shot_at(session, row, shot_number).id)
        if status is not None:
            where.append(Take.status == status)
        total = session.scalar(select(func.count()).select_from(Take).join(Shot).where(*where)) or 0
        rows = session.execute(
            select(Take, Shot.position)
            .join(Shot, Shot.id == Take.shot_id)
            .where(*where)
            .order_by(Shot.position, Take.take_number)
            .offset(offset)
            .limit(limit)
        ).all()
        items = tuple(queries.take_info(studio.media, take, position) for take, position in rows)
        return Page(items, total, offset, limit)
