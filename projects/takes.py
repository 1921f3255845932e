"""Takes: the renderings of a shot, their approval, and paging through them.

A take is numbered within its shot (1, 2, 3, ...). It is created ``queued`` with every generation parameter by
the render queue and moves from state to state only through :mod:`projects.lifecycle`; it becomes ``done`` only in
the transaction that records its video, after the file is in the media store, so a take that says ``done`` always
has its media. A shot has at most one approved take.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from projects import queries, shot_pictures
from projects.errors import Conflict, InvalidInput
from projects.records import Page, TakeInfo
from projects.studio import Studio
from storage.models import TAKE_STATUSES, Shot, Take


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
    """Recompute the stale mark of ``shot`` and of its neighbours: the shot after it (whose source may just have
    changed) and the shot before it (which may end on this shot's first frame).

    A shot is stale when its current take (approved, else newest) no longer starts from what it would start
    from now: a shot that continues from the previous one, from another take; any other shot, from another first
    frame (a keyframe candidate was approved, the keyframe was replaced); and a take that ended on a given last
    frame, from another last frame.
    """
    for candidate in (shot_pictures.neighbour(session, shot, -1), shot, shot_pictures.neighbour(session, shot, +1)):
        if candidate is not None:
            candidate.stale = _is_stale(session, candidate)
    session.flush()


def refresh_project_stale(session: Session, project_id: int) -> None:
    """Recompute every shot's stale mark (after shots moved or were deleted, or takes were deleted)."""
    for shot in session.scalars(select(Shot).where(Shot.project_id == project_id)):
        shot.stale = _is_stale(session, shot)
    session.flush()


def _is_stale(session: Session, shot: Shot) -> bool:
    current = _current_take(session, shot)
    if current is None:
        return False
    started = {i.role: i.sha256 for i in current.inputs if i.role in ("keyframe", "last_frame") and i.position == 0}
    if "last_frame" in started:
        ending = shot_pictures.last_frame(session, shot)
        if ending is None or ending.sha256 != started["last_frame"]:
            return True
    if not shot.continue_from_previous or shot.position == 1:
        own = shot_pictures.first_frame(session, shot)
        # A take with no recorded first frame (text only, or from an older bundle) cannot be judged by it.
        return "keyframe" in started and own is not None and own.sha256 != started["keyframe"]
    source = source_take_for(session, shot)
    # A take that continued another shot's take is stale too when the shot before has no take now (a new shot
    # was inserted before it, or the takes it started from were deleted).
    return current.source_take_id != (source.id if source is not None else None)


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
