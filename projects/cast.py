"""The cast: characters of a project and their reference images.

A character's reference images are what identity is measured against and what reference-driven backends
(Wan VACE) condition on; the first one also serves as a shot's keyframe when a shot asks for it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from projects import queries
from projects.errors import Conflict, InvalidInput
from projects.images import CheckedImage, check_image
from projects.records import CharacterInfo, ReferenceInfo
from projects.studio import Studio
from projects.validation import MAX_DESCRIPTION_LENGTH, MAX_REFERENCES, clean_name, clean_text, name_key
from storage.models import Character, Project, ReferenceImage, Shot, shot_characters


def add_character(
    studio: Studio,
    project: str | int,
    name: str,
    *,
    description: str = "",
    references: list[Path] | tuple[Path, ...] = (),
) -> CharacterInfo:
    """A new character, with its reference images checked and stored in the same transaction."""
    name = clean_name(name, "character name")
    description = clean_text(description, "description", max_length=MAX_DESCRIPTION_LENGTH)
    checked = [check_image(Path(path), f"references[{i}]") for i, path in enumerate(references)]
    with studio.write() as session:
        row = queries.find_project(session, project)
        character = new_character(session, row, name, description)
        for image in checked:
            attach_reference(studio, session, character, image)
        session.flush()
        session.refresh(character)
        return queries.character_info(studio.media, character)


def update_character(
    studio: Studio, character_id: int, *, name: str | None = None, description: str | None = None
) -> CharacterInfo:
    with studio.write() as session:
        character = queries.get_character(session, character_id)
        if name is not None:
            name = clean_name(name, "character name")
            if name_key(name) != character.name_key:
                _check_free(session, character.project, name)
            character.name, character.name_key = name, name_key(name)
        if description is not None:
            character.description = clean_text(description, "description", max_length=MAX_DESCRIPTION_LENGTH)
        session.flush()
        return queries.character_info(studio.media, character)


def remove_character(studio: Studio, character_id: int, *, force: bool = False) -> CharacterInfo:
    """Remove a character and its reference images.

    A character that shots still name is kept unless ``force``: removing it would silently change those
    shots (they lose the character, and a keyframe taken from its reference).
    """
    with studio.write() as session:
        character = queries.get_character(session, character_id)
        info = queries.character_info(studio.media, character)
        used = session.scalars(
            select(Shot.position)
            .where(
                (Shot.keyframe_character_id == character.id)
                | Shot.id.in_(select(shot_characters.c.shot_id).where(shot_characters.c.character_id == character.id))
            )
            .order_by(Shot.position)
        ).all()
        if used and not force:
            shots = ", ".join(str(n) for n in used)
            raise Conflict(
                f"{character.name} appears in shot(s) {shots}; remove them from those shots first, "
                "or remove the character anyway (force)"
            )
        session.delete(character)
        session.flush()
    return info


def list_characters(studio: Studio, project: str | int) -> list[CharacterInfo]:
    with studio.read() as session:
        row = queries.find_project(session, project)
        characters = session.scalars(
            select(Character)
            .where(Character.project_id == row.id)
            .options(selectinload(Character.references))
            .order_by(Character.id)
        ).all()
        return [queries.character_info(studio.media, c) for c in characters]


def get_character(studio: Studio, character_id: int) -> CharacterInfo:
    with studio.read() as session:
        return queries.character_info(studio.media, queries.get_character(session, character_id))


def add_reference(
    studio: Studio, character_id: int, image: Path, *, original_name: str | None = None
) -> ReferenceInfo:
    """Add one reference image (PNG, JPEG or WebP) to a character."""
    checked = check_image(Path(image), "reference image")
    with studio.write() as session:
        character = queries.get_character(session, character_id)
        ref = attach_reference(studio, session, character, checked, original_name=original_name)
        session.flush()
        return queries.reference_info(studio.media, ref)


def remove_reference(studio: Studio, reference_id: int) -> ReferenceInfo:
    with studio.write() as session:
        ref = session.get(ReferenceImage, reference_id)
        if ref is None:
            raise InvalidInput(f"there is no reference image with id {reference_id}", "reference")
        info = queries.reference_info(studio.media, ref)
        session.delete(ref)
        session.flush()
    return info


# Helpers for services that build characters inside a larger transaction (storyboard import).


def new_character(session: Session, project: Project, name: str, description: str) -> Character:
    _check_free(session, project, name)
    character = Character(project_id=project.id, name=name, name_key=name_key(name), description=description)
    session.add(character)
    session.flush()
    return character


def attach_reference(
    studio: Studio, session: Session, character: Character, image: CheckedImage, *, original_name: str | None = None
) -> ReferenceImage:
    count = session.scalar(
        select(func.count()).select_from(ReferenceImage).where(ReferenceImage.character_id == character.id)
    )
    if count >= MAX_REFERENCES:
        raise InvalidInput(f"{character.name} already has {count} reference images; the limit is {MAX_REFERENCES}")
    stored = studio.store_image(session, image)
    duplicate = session.scalar(
        select(ReferenceImage).where(
            ReferenceImage.character_id == character.id, ReferenceImage.sha256 == stored.sha256
        )
    )
    if duplicate is not None:
        raise Conflict(f"{character.name} already has this image as a reference ({duplicate.original_name})")
    last = session.scalar(select(func.max(ReferenceImage.position)).where(ReferenceImage.character_id == character.id))
    shown = clean_text(original_name if original_name is not None else image.path.name, "file name", max_length=255)
    ref = ReferenceImage(
        character_id=character.id,
        sha256=stored.sha256,
        position=(last or 0) + 1,
        original_name=shown,
        width=image.width,
        height=image.height,
    )
    session.add(ref)
    session.flush()
    return ref


def _check_free(session: Session, project: Project, name: str) -> None:
    existing = session.scalar(
        select(Character).where(Character.project_id == project.id, Character.name_key == name_key(name))
    )
    if existing is not None:
        raise Conflict(f"project {project.name!r} already has a character named {existing.name!r}")
