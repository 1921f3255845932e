"""The shot list: add, edit, reorder, delete and page through a project's shots.

Shots are numbered 1..N in storyboard order with no gaps; the number is the shot's ``position`` column,
kept unique per project by the schema. Moving or deleting renumbers the others in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from projects import queries
from projects.errors import InvalidInput
from projects.images import CheckedImage, check_image
from projects.records import Page, ShotInfo
from projects.studio import Studio
from projects.takes import refresh_project_stale, refresh_stale
from projects.validation import MAX_NAME_LENGTH, clean_camera, clean_duration, clean_flag, clean_prompt, clean_text
from storage.models import Project, Shot

MAX_SCENE_LENGTH = 50
MAX_TITLE_LENGTH = 200


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


@dataclass(frozen=True)
class ShotFields:
    """A shot's values after validation, before they touch the database."""

    prompt: str
    duration: float
    scene: str = ""
    title: str = ""
    camera: str = "static"
    characters: tuple[str, ...] = ()
    keyframe: CheckedImage | None = None
    keyframe_character: str | None = None
    continue_from_previous: bool = False
    last_frame: CheckedImage | None = None
    last_frame_from_next: bool = False


def clean_shot_fields(
    *,
    prompt: Any,
    duration: Any,
    scene: Any = "",
    title: Any = "",
    camera: Any = "static",
    characters: Any = (),
    keyframe: Path | str | None = None,
    keyframe_character: Any = None,
    continue_from_previous: Any = False,
    last_frame: Path | str | None = None,
    last_frame_from_next: Any = False,
) -> ShotFields:
    """Validate every field of a shot; raise :class:`InvalidInput` naming the first bad one."""
    if isinstance(characters, str):
        characters = [part for part in characters.replace(";", ",").split(",") if part.strip()]
    if not isinstance(characters, (list, tuple)):
        raise InvalidInput("must be a list of character names", "characters")
    names = tuple(
        clean_text(c, f"characters[{i}]", max_length=MAX_NAME_LENGTH, required=True) for i, c in enumerate(characters)
    )
    if keyframe is not None and keyframe_character not in (None, ""):
        raise InvalidInput("give a keyframe image or a keyframe character, not both", "keyframe")
    return ShotFields(
        prompt=clean_prompt(prompt),
        duration=clean_duration(duration),
        scene=clean_text(scene, "scene", max_length=MAX_SCENE_LENGTH),
        title=clean_text(title, "title", max_length=MAX_TITLE_LENGTH),
        camera=clean_camera(camera),
        characters=names,
        keyframe=check_image(Path(keyframe), "keyframe") if keyframe not in (None, "") else None,
        keyframe_character=clean_text(keyframe_character, "keyframe_character", max_length=MAX_NAME_LENGTH) or None,
        continue_from_previous=clean_flag(continue_from_previous, "continue_from_previous"),
        last_frame=check_image(Path(last_frame), "last_frame") if last_frame not in (None, "") else None,
        last_frame_from_next=_ending(last_frame, last_frame_from_next),
    )


def _ending(last_frame: Any, from_next: Any) -> bool:
    flag = clean_flag(from_next, "last_frame_from_next")
    if flag and last_frame not in (None, ""):
        raise InvalidInput("give a last frame or end on the next shot's first frame, not both", "last_frame")
    return flag


def add_shot(studio: Studio, project: str | int, *, position: int | None = None, **fields: Any) -> ShotInfo:
    """Add a shot at the end of the storyboard, or at 1-based ``position`` (later shots move down).

    ``fields`` are those of :func:`clean_shot_fields`: prompt and duration are required.
    """
    cleaned = clean_shot_fields(**fields)
    with studio.write() as session:
        row = queries.find_project(session, project)
        shot = insert_shot(studio, session, row, cleaned, position=position)
        return queries.shot_info(session, studio.media, shot)


def update_shot(
    studio: Studio,
    shot_id: int,
    *,
    prompt: Any = UNCHANGED,
    duration: Any = UNCHANGED,
    scene: Any = UNCHANGED,
    title: Any = UNCHANGED,
    camera: Any = UNCHANGED,
    characters: Any = UNCHANGED,
    keyframe: Any = UNCHANGED,
    keyframe_character: Any = UNCHANGED,
    continue_from_previous: Any = UNCHANGED,
    last_frame: Any = UNCHANGED,
    last_frame_from_next: Any = UNCHANGED,
) -> ShotInfo:
    """Change some fields of a shot; the others keep their values. ``keyframe=None`` clears the keyframe,
    ``last_frame=None`` the last frame."""
    with studio.write() as session:
        shot = queries.get_shot(session, shot_id)
        current = {
            "prompt": shot.prompt,
            "duration": shot.duration,
            "scene": shot.scene,
            "title": shot.title,
            "camera": shot.camera,
            "characters": [c.name for c in shot.characters],
            "continue_from_previous": shot.continue_from_previous,
        }
        given = {
            "prompt": prompt,
            "duration": duration,
            "scene": scene,
            "title": title,
            "camera": camera,
            "characters": characters,
            "continue_from_previous": continue_from_previous,
        }
        merged = {key: current[key] if value is UNCHANGED else value for key, value in given.items()}
        new_keyframe = keyframe not in (UNCHANGED, None, "")
        new_character = keyframe_character not in (UNCHANGED, None, "")
        new_last = last_frame not in (UNCHANGED, None, "")
        from_next = shot.last_frame_from_next if last_frame_from_next is UNCHANGED else last_frame_from_next
        if new_last and last_frame_from_next is UNCHANGED:
            from_next = False  # a picture of its own replaces ending on the next shot's
        cleaned = clean_shot_fields(
            **merged,
            keyframe=keyframe if new_keyframe else None,
            keyframe_character=keyframe_character if new_character else None,
            last_frame=last_frame if new_last else None,
            last_frame_from_next=from_next,
        )
        _apply_fields(session, shot, cleaned)
        if new_last:
            shot.last_frame_sha256 = studio.store_image(session, cleaned.last_frame).sha256
        elif last_frame is None or last_frame == "" or cleaned.last_frame_from_next:
            shot.last_frame_sha256 = None
        if new_keyframe:
            shot.keyframe_character_id = None
            shot.keyframe_sha256 = studio.store_image(session, cleaned.keyframe).sha256
        elif new_character:
            shot.keyframe_sha256 = None
            shot.keyframe_character_id = queries.resolve_characters(
                session, shot.project, [cleaned.keyframe_character], "keyframe_character"
            )[0].id
        else:
            if keyframe is None or keyframe == "":
                shot.keyframe_sha256 = None
            if keyframe_character is None or keyframe_character == "":
                shot.keyframe_character_id = None
        session.flush()
        refresh_stale(session, shot)  # an edit changes this shot's pictures, and so its neighbours' marks at most
        session.expire(shot, ["keyframe", "keyframe_character", "last_frame"])
        return queries.shot_info(session, studio.media, shot)


def move_shot(studio: Studio, shot_id: int, to_number: int) -> list[ShotInfo]:
    """Move a shot to 1-based ``to_number``; the shots between shift by one. Returns the new order."""
    with studio.write() as session:
        shot = queries.get_shot(session, shot_id)
        count = queries.shot_count(session, shot.project_id)
        if isinstance(to_number, bool) or not isinstance(to_number, int) or not 1 <= to_number <= count:
            raise InvalidInput(f"must be a shot number between 1 and {count}, got {to_number!r}", "position")
        start = shot.position
        if to_number != start:
            _park(session, shot)
            if to_number < start:
                shift_positions(session, shot.project_id, to_number, start - 1, +1)
            else:
                shift_positions(session, shot.project_id, start + 1, to_number, -1)
            _place(session, shot, to_number)
            refresh_project_stale(session, shot.project_id)
        return _all_shots(session, studio, shot.project_id)


def delete_shot(studio: Studio, shot_id: int) -> ShotInfo:
    """Delete a shot and its takes; later shots move up by one."""
    with studio.write() as session:
        shot = queries.get_shot(session, shot_id)
        info = queries.shot_info(session, studio.media, shot)
        project_id, position = shot.project_id, shot.position
        session.delete(shot)
        session.flush()
        last = queries.shot_count(session, project_id) + 1
        shift_positions(session, project_id, position + 1, last, -1)
        refresh_project_stale(session, project_id)
    return info


def get_shot(studio: Studio, shot_id: int) -> ShotInfo:
    with studio.read() as session:
        return queries.shot_info(session, studio.media, queries.get_shot(session, shot_id))


def all_shots(studio: Studio, project: str | int) -> list[ShotInfo]:
    """Every shot of the storyboard, in order, however many (read a page at a time)."""
    found: list[ShotInfo] = []
    while True:
        page = list_shots(studio, project, offset=len(found), limit=queries.MAX_PAGE)
        found.extend(page.items)
        if not page.items or len(found) >= page.total:
            return found


def shot_number(studio: Studio, project: str | int, number: int) -> ShotInfo:
    """The shot at 1-based ``number``; NotFound names how many shots there are."""
    with studio.read() as session:
        row = queries.find_project(session, project)
        return queries.shot_info(session, studio.media, queries.shot_at(session, row, number))


def list_shots(studio: Studio, project: str | int, *, offset: int = 0, limit: int = 50) -> Page[ShotInfo]:
    """One page of the storyboard, in order."""
    queries.check_paging(offset, limit)
    with studio.read() as session:
        row = queries.find_project(session, project)
        shots = session.scalars(
            select(Shot)
            .where(Shot.project_id == row.id)
            .order_by(Shot.position)
            .offset(offset)
            .limit(limit)
            .options(*queries.SHOT_LOADING)
        ).all()
        items = queries.shot_infos(session, studio.media, shots)
        return Page(tuple(items), queries.shot_count(session, row.id), offset, limit)


# Helpers used inside a larger transaction (storyboard import).


def insert_shot(
    studio: Studio, session: Session, project: Project, fields: ShotFields, *, position: int | None = None
) -> Shot:
    count = queries.shot_count(session, project.id)
    if position is None:
        position = count + 1
    if isinstance(position, bool) or not isinstance(position, int) or not 1 <= position <= count + 1:
        raise InvalidInput(f"must be a shot number between 1 and {count + 1}, got {position!r}", "position")
    shift_positions(session, project.id, position, count, +1)
    shot = _new_shot(studio, session, project, fields, position)
    session.flush()
    refresh_stale(session, shot)  # the shot after an inserted one continues from it now, not from its old neighbour
    return shot


def append_shots(studio: Studio, session: Session, project: Project, shots: Sequence[ShotFields]) -> list[Shot]:
    """Add ``shots`` at the end of the storyboard in one go (a storyboard file's): one count, one flush, and the
    stale mark of the first only, the one new shot that can continue from a shot with takes. A storyboard of
    thousands of shots holds the write lock for a moment, not for seconds. Errors name ``shot N`` (1-based)."""
    count = queries.shot_count(session, project.id)
    made: list[Shot] = []
    with session.no_autoflush:
        for index, fields in enumerate(shots, start=1):
            try:
                made.append(_new_shot(studio, session, project, fields, count + index))
            except InvalidInput as exc:
                raise exc.within(f"shot {index}") from None
    session.flush()
    if made:
        refresh_stale(session, made[0])
    return made


def _new_shot(studio: Studio, session: Session, project: Project, fields: ShotFields, position: int) -> Shot:
    """A shot at ``position`` (free already) with ``fields`` and its keyframe, added to the session."""
    shot = Shot(project_id=project.id, position=position, prompt=fields.prompt, duration=fields.duration)
    _apply_fields(session, shot, fields, project=project)
    if fields.last_frame is not None:
        shot.last_frame_sha256 = studio.store_image(session, fields.last_frame).sha256
    if fields.keyframe is not None:
        shot.keyframe_sha256 = studio.store_image(session, fields.keyframe).sha256
    elif fields.keyframe_character:
        shot.keyframe_character_id = queries.resolve_characters(
            session, project, [fields.keyframe_character], "keyframe_character"
        )[0].id
    session.add(shot)
    return shot


def _apply_fields(session: Session, shot: Shot, fields: ShotFields, project: Project | None = None) -> None:
    project = project or shot.project
    shot.prompt = fields.prompt
    shot.duration = fields.duration
    shot.scene = fields.scene
    shot.title = fields.title
    shot.camera = fields.camera
    shot.continue_from_previous = fields.continue_from_previous
    shot.last_frame_from_next = fields.last_frame_from_next
    shot.characters = queries.resolve_characters(session, project, fields.characters, "characters")


def _park(session: Session, shot: Shot) -> None:
    """Take a shot out of the numbering (position 0 is never a real shot number) while others move."""
    shot.position = 0
    session.flush()


def _place(session: Session, shot: Shot, number: int) -> None:
    shot.position = number
    session.flush()


def shift_positions(session: Session, project_id: int, first: int, last: int, by: int) -> None:
    """Renumber shots ``first..last`` by ``by``.

    SQLite checks the unique ``(project_id, position)`` row by row, so shifting in place could collide
    half-way; the shots go through negative numbers first.
    """
    if first > last:
        return
    in_range = (Shot.project_id == project_id) & Shot.position.between(first, last)
    session.execute(
        update(Shot).where(in_range).values(position=-Shot.position).execution_options(synchronize_session=False)
    )
    session.execute(
        update(Shot)
        .where((Shot.project_id == project_id) & Shot.position.between(-last, -first))
        .values(position=-Shot.position + by)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()


def _all_shots(session: Session, studio: Studio, project_id: int) -> list[ShotInfo]:
    shots: Sequence[Shot] = session.scalars(
        select(Shot).where(Shot.project_id == project_id).order_by(Shot.position).options(*queries.SHOT_LOADING)
    ).all()
    return queries.shot_infos(session, studio.media, shots)
