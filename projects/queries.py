"""Query helpers shared by the services: they take a session first, never commit, and raise
:class:`NotFound` with a message a user understands. The ``*_info`` functions turn rows into records while
the session is still open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from projects import shot_pictures
from projects.errors import Conflict, InvalidInput, NotFound
from projects.records import CharacterInfo, Keyframe, ProjectInfo, ReferenceInfo, ShotInfo, TakeInfo
from projects.validation import name_key
from storage.media import MediaStore
from storage.models import Character, MediaObject, PictureTake, Project, ReferenceImage, Shot, Take

T = TypeVar("T")


def _get(session: Session, model: type[T], row_id: int, what: str) -> T:
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"there is no {what} with id {row_id}")
    return row


def get_project(session: Session, project_id: int) -> Project:
    return _get(session, Project, project_id, "project")


def find_project(session: Session, name_or_id: str | int) -> Project:
    """A project by name (case-insensitive), by ``#id``, or by a bare number when that can mean only one project.

    A bare number that is one project's name and another's id is refused rather than guessed: ``project delete 1``
    must not delete the project called "1" when id 1 was meant, or the other way round.
    """
    if isinstance(name_or_id, int):
        return get_project(session, name_or_id)
    text = str(name_or_id).strip()
    if text.startswith("#") and text[1:].isascii() and text[1:].isdigit():
        return get_project(session, int(text[1:]))
    project = session.scalar(select(Project).where(Project.name_key == name_key(text)))
    if text.isascii() and text.isdigit():
        by_id = session.get(Project, int(text))
        if project is not None and by_id is not None and by_id.id != project.id:
            raise Conflict(
                f"{text!r} is the name of one project (id {project.id}) and the id of another ({by_id.name!r}); "
                f"say #{text} for the project with id {text}, or #{project.id} for the one named {text!r}"
            )
        project = project or by_id
    if project is None:
        known = session.scalars(select(Project.name).order_by(Project.name_key).limit(10)).all()
        hint = f"; projects: {', '.join(known)}" if known else "; there are no projects yet"
        raise NotFound(f"there is no project named {text!r}{hint}")
    return project


def get_character(session: Session, character_id: int) -> Character:
    return _get(session, Character, character_id, "character")


def find_character(session: Session, project: Project, name: str) -> Character:
    character = session.scalar(
        select(Character).where(Character.project_id == project.id, Character.name_key == name_key(name))
    )
    if character is None:
        raise NotFound(f"project {project.name!r} has no character named {name!r}")
    return character


def get_shot(session: Session, shot_id: int) -> Shot:
    return _get(session, Shot, shot_id, "shot")


def shot_at(session: Session, project: Project, number: int) -> Shot:
    """The shot at 1-based storyboard ``number``."""
    shot = session.scalar(select(Shot).where(Shot.project_id == project.id, Shot.position == number))
    if shot is None:
        count = shot_count(session, project.id)
        raise NotFound(f"project {project.name!r} has no shot {number}; it has {count} shot(s)")
    return shot


def get_take(session: Session, take_id: int) -> Take:
    return _get(session, Take, take_id, "take")


def shot_count(session: Session, project_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Shot).where(Shot.project_id == project_id)) or 0


def resolve_characters(session: Session, project: Project, names: Iterable[str], field: str) -> list[Character]:
    """Characters of ``project`` by name; an unknown or repeated name is an error.

    A shot keeps its characters as a set, listed in cast order, whatever order they were given in.
    """
    names = list(names)
    if not names:
        return []
    known = {c.name_key: c for c in session.scalars(select(Character).where(Character.project_id == project.id))}
    chosen: list[Character] = []
    for name in names:
        character = known.get(name_key(name))
        if character is None:
            cast = ", ".join(sorted(c.name for c in known.values())) or "none yet"
            raise InvalidInput(f"unknown character {name!r} (the cast is: {cast})", field)
        if character in chosen:
            raise InvalidInput(f"character {name!r} is listed twice", field)
        chosen.append(character)
    return chosen


MAX_PAGE = 500  # the most rows one page of a listing holds


def check_paging(offset: int, limit: int, max_limit: int = MAX_PAGE) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"must be a whole number of 0 or more, got {offset!r}", "offset")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_limit:
        raise InvalidInput(f"must be between 1 and {max_limit}, got {limit!r}", "limit")


# Rows to records.


def project_info(session: Session, project: Project) -> ProjectInfo:
    characters = session.scalar(select(func.count()).select_from(Character).where(Character.project_id == project.id))
    return ProjectInfo(
        id=project.id,
        name=project.name,
        width=project.width,
        height=project.height,
        fps=project.fps,
        created_at=project.created_at,
        character_count=characters or 0,
        shot_count=shot_count(session, project.id),
    )


def reference_info(media: MediaStore, ref: ReferenceImage) -> ReferenceInfo:
    return ReferenceInfo(
        id=ref.id,
        character_id=ref.character_id,
        position=ref.position,
        sha256=ref.sha256,
        extension=ref.media.extension,
        path=media.path_for(ref.sha256, ref.media.extension),
        original_name=ref.original_name,
        width=ref.width,
        height=ref.height,
    )


def character_info(media: MediaStore, character: Character) -> CharacterInfo:
    return CharacterInfo(
        id=character.id,
        project_id=character.project_id,
        name=character.name,
        description=character.description,
        references=tuple(reference_info(media, ref) for ref in character.references),
    )


def shot_infos(session: Session, media: MediaStore, shots: Sequence[Shot]) -> list[ShotInfo]:
    """Records for ``shots``, with take counts and approvals fetched in two queries for the whole batch."""
    ids = [shot.id for shot in shots]
    if not ids:
        return []
    counts = dict(
        session.execute(select(Take.shot_id, func.count()).where(Take.shot_id.in_(ids)).group_by(Take.shot_id)).all()
    )
    approved = dict(session.execute(select(Take.shot_id, Take.id).where(Take.shot_id.in_(ids), Take.approved)).all())
    pictures: dict[int, Path] = {}
    shown = (
        select(Take.shot_id, MediaObject.sha256, MediaObject.extension)
        .join(MediaObject, MediaObject.sha256 == Take.thumbnail_sha256)
        .where(Take.shot_id.in_(ids), Take.status == "done")
        .order_by(Take.approved, Take.take_number)  # later rows win: the approved take, else the newest
    )
    for shot_id, sha256, extension in session.execute(shown).all():
        pictures[shot_id] = media.path_for(sha256, extension)
    drawn: dict[tuple[int, str], Keyframe] = {}
    approved_pictures = (
        select(PictureTake.shot_id, PictureTake.role, PictureTake.id, MediaObject.sha256, MediaObject.extension)
        .join(MediaObject, MediaObject.sha256 == PictureTake.image_sha256)
        .where(PictureTake.shot_id.in_(ids), PictureTake.approved)
    )
    for shot_id, role, picture_id, sha256, extension in session.execute(approved_pictures).all():
        drawn[(shot_id, role)] = Keyframe("drawn", sha256, media.path_for(sha256, extension), None, picture_id)
    candidates = dict(
        session.execute(
            select(PictureTake.shot_id, func.count())
            .where(PictureTake.shot_id.in_(ids), PictureTake.status == "done")
            .group_by(PictureTake.shot_id)
        ).all()
    )
    return [
        ShotInfo(
            id=shot.id,
            project_id=shot.project_id,
            number=shot.position,
            scene=shot.scene,
            title=shot.title,
            prompt=shot.prompt,
            duration=shot.duration,
            camera=shot.camera,
            characters=tuple(c.name for c in shot.characters),
            keyframe=drawn.get((shot.id, "first")) or _keyframe(media, shot),
            continue_from_previous=shot.continue_from_previous,
            take_count=counts.get(shot.id, 0),
            approved_take_id=approved.get(shot.id),
            picture=pictures.get(shot.id) or _drawn_path(drawn, shot.id) or _keyframe_picture(media, shot),
            stale=shot.stale,
            last_frame=drawn.get((shot.id, "last")) or _last_frame(session, media, shot),
            last_frame_from_next=shot.last_frame_from_next,
            keyframe_candidates=candidates.get(shot.id, 0),
        )
        for shot in shots
    ]


def _drawn_path(drawn: dict[tuple[int, str], Keyframe], shot_id: int) -> Path | None:
    found = drawn.get((shot_id, "first"))
    return found.path if found is not None else None


def _last_frame(session: Session, media: MediaStore, shot: Shot) -> Keyframe:
    if shot.last_frame_sha256 is None and not shot.last_frame_from_next:
        return Keyframe("none")  # the common case, known without a query
    found = shot_pictures.last_frame(session, shot)
    if found is None:
        return Keyframe("none")
    path = media.path_for(found.sha256, found.extension)
    return Keyframe(found.source, found.sha256, path, found.character, found.picture_take_id)


def _keyframe_picture(media: MediaStore, shot: Shot) -> Path | None:
    if shot.keyframe is not None:
        return media.path_for(shot.keyframe.sha256, shot.keyframe.extension)
    character = shot.keyframe_character
    if character is not None and character.references:
        ref = character.references[0]
        return media.path_for(ref.sha256, ref.media.extension)
    return None


def shot_info(session: Session, media: MediaStore, shot: Shot) -> ShotInfo:
    return shot_infos(session, media, [shot])[0]


def _keyframe(media: MediaStore, shot: Shot) -> Keyframe:
    if shot.keyframe is not None:
        path = media.path_for(shot.keyframe.sha256, shot.keyframe.extension)
        return Keyframe("image", sha256=shot.keyframe.sha256, path=path)
    if shot.keyframe_character is not None:
        return Keyframe("character", character=shot.keyframe_character.name)
    return Keyframe("none")


def take_info(media: MediaStore, take: Take, shot_number: int) -> TakeInfo:
    video = media.path_for(take.video.sha256, take.video.extension) if take.video else None
    thumb = media.path_for(take.thumbnail.sha256, take.thumbnail.extension) if take.thumbnail else None
    return TakeInfo(
        id=take.id,
        shot_id=take.shot_id,
        shot_number=shot_number,
        take_number=take.take_number,
        status=take.status,
        approved=take.approved,
        backend=take.backend,
        seed=take.seed,
        prompt=take.prompt,
        width=take.width,
        height=take.height,
        fps=take.fps,
        num_frames=take.num_frames,
        params=dict(take.params),
        timings=dict(take.timings),
        provenance=dict(take.provenance),
        video_sha256=take.video_sha256,
        video_path=video,
        thumbnail_path=thumb,
        error=take.error,
        created_at=take.created_at,
        finished_at=take.finished_at,
        source_take_id=take.source_take_id,
    )


SHOT_LOADING = (selectinload(Shot.characters), selectinload(Shot.keyframe_character))
