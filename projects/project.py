"""Projects: create, rename, change settings, delete, list, and a project's status at a glance."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from projects import queries
from projects.defaults import DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH
from projects.errors import Conflict
from projects.records import ProjectInfo, ProjectStatus, ShotStatus, TakeSummary
from projects.studio import Studio
from projects.validation import clean_fps, clean_name, clean_side, name_key
from storage.models import TAKE_STATUSES, Character, Project, Shot, Take


def create_project(
    studio: Studio,
    name: str,
    *,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    fps: int = DEFAULT_FPS,
    replace: bool = False,
) -> ProjectInfo:
    """A new, empty project. Its size and fps are what takes are rendered at unless a shot says otherwise.

    With ``replace``, a project of the same name is deleted (with its shots and takes) in the same transaction,
    so a request that fails leaves it as it was.
    """
    name = clean_name(name, "project name")
    width, height, fps = clean_side(width, "width"), clean_side(height, "height"), clean_fps(fps)
    with studio.write() as session:
        existing = session.scalar(select(Project).where(Project.name_key == name_key(name)))
        if existing is not None and replace:
            session.delete(existing)
            session.flush()
        _check_free(session, name)
        project = Project(name=name, name_key=name_key(name), width=width, height=height, fps=fps)
        session.add(project)
        session.flush()
        return queries.project_info(session, project)


def rename_project(studio: Studio, project: str | int, new_name: str) -> ProjectInfo:
    new_name = clean_name(new_name, "project name")
    with studio.write() as session:
        row = queries.find_project(session, project)
        if name_key(new_name) != row.name_key:
            _check_free(session, new_name)
        row.name, row.name_key = new_name, name_key(new_name)
        session.flush()
        return queries.project_info(session, row)


def update_project_settings(
    studio: Studio,
    project: str | int,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: int | None = None,
) -> ProjectInfo:
    """Change the size or fps new takes are rendered at; existing takes keep theirs."""
    with studio.write() as session:
        row = queries.find_project(session, project)
        if width is not None:
            row.width = clean_side(width, "width")
        if height is not None:
            row.height = clean_side(height, "height")
        if fps is not None:
            row.fps = clean_fps(fps)
        session.flush()
        return queries.project_info(session, row)


def delete_project(studio: Studio, project: str | int) -> ProjectInfo:
    """Delete a project with its characters, shots and takes. Media nothing else uses is removed after."""
    with studio.write() as session:
        row = queries.find_project(session, project)
        info = queries.project_info(session, row)
        session.delete(row)
        session.flush()
    return info


def get_project(studio: Studio, project: str | int) -> ProjectInfo:
    with studio.read() as session:
        return queries.project_info(session, queries.find_project(session, project))


def list_projects(studio: Studio) -> list[ProjectInfo]:
    with studio.read() as session:
        characters = dict(
            session.execute(select(Character.project_id, func.count()).group_by(Character.project_id)).all()
        )
        shots = dict(session.execute(select(Shot.project_id, func.count()).group_by(Shot.project_id)).all())
        return [
            ProjectInfo(
                id=p.id,
                name=p.name,
                width=p.width,
                height=p.height,
                fps=p.fps,
                created_at=p.created_at,
                character_count=characters.get(p.id, 0),
                shot_count=shots.get(p.id, 0),
            )
            for p in session.scalars(select(Project).order_by(Project.name_key))
        ]


def project_status(studio: Studio, project: str | int) -> ProjectStatus:
    """Counts a user checks before exporting: which shots still lack an approved take, takes by status."""
    with studio.read() as session:
        row = queries.find_project(session, project)
        shots = session.execute(
            select(Shot.id, Shot.position, Shot.duration, Shot.title, Shot.stale)
            .where(Shot.project_id == row.id)
            .order_by(Shot.position)
        ).all()
        per_shot: dict[int, list[TakeSummary]] = {shot.id: [] for shot in shots}
        for take in session.scalars(
            select(Take).join(Shot).where(Shot.project_id == row.id).order_by(Shot.position, Take.take_number)
        ):
            video = studio.media.path_for(take.video.sha256, take.video.extension) if take.video else None
            per_shot[take.shot_id].append(
                TakeSummary(
                    take.id, take.take_number, take.status, take.seed, take.backend, video, take.approved, take.error
                )
            )
        approved = dict(
            session.execute(
                select(Take.shot_id, Take.num_frames * 1.0 / Take.fps)
                .join(Shot, Shot.id == Take.shot_id)
                .where(Shot.project_id == row.id, Take.approved)
            ).all()
        )
        by_status = dict.fromkeys(TAKE_STATUSES, 0)
        by_status.update(
            session.execute(
                select(Take.status, func.count())
                .join(Shot, Shot.id == Take.shot_id)
                .where(Shot.project_id == row.id)
                .group_by(Take.status)
            ).all()
        )
        return ProjectStatus(
            project=queries.project_info(session, row),
            shot_count=len(shots),
            approved_count=sum(1 for shot in shots if shot.id in approved),
            missing_approval=tuple(shot.position for shot in shots if shot.id not in approved),
            takes_by_status=by_status,
            storyboard_seconds=sum(shot.duration for shot in shots),
            approved_seconds=sum(approved.values()),
            shots=tuple(ShotStatus(shot.position, shot.title, shot.stale, tuple(per_shot[shot.id])) for shot in shots),
        )


def _check_free(session: Session, name: str) -> None:
    existing = session.scalar(select(Project).where(Project.name_key == name_key(name)))
    if existing is not None:
        raise Conflict(f"a project named {existing.name!r} already exists; choose another name")
