"""The pictures a shot starts and ends on, and the place it is set in: the one rule for each.

A shot's **first frame** (its keyframe), when it does not continue the previous shot's take, is in this order:
its approved drawn keyframe (a keyframe candidate, :mod:`projects.keyframes`), else its uploaded picture, else
its keyframe character's first reference. Its **last frame**, for backends that end on one: its approved drawn
last frame, else its uploaded last frame, else, when it is marked to end on the next shot's first frame, that
picture (so an image-to-video backend bridges the cut). Its **location**, the picture keyframe candidates are
drawn in: its own uploaded picture, else the nearest earlier shot's of the same scene.

The render queue, the worker, the stale marks, the storyboard's records and the keyframe candidates all ask
here, so a shot shows, renders and is judged from the same pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipelines.pictures import open_rgb
from projects.studio import Studio
from storage.models import PictureTake, Shot


@dataclass(frozen=True)
class ShotPicture:
    """A stored picture and where it came from: ``drawn`` (an approved candidate, ``picture_take_id``),
    ``image`` (uploaded), ``character`` (a reference of ``character``) or ``next shot``."""

    sha256: str
    extension: str
    source: str
    picture_take_id: int | None = None
    character: str | None = None


def approved_picture(session: Session, shot: Shot, role: str) -> PictureTake | None:
    """The shot's approved drawn picture for ``role`` (``first`` or ``last``)."""
    return session.scalar(
        select(PictureTake).where(PictureTake.shot_id == shot.id, PictureTake.role == role, PictureTake.approved)
    )


def first_frame(session: Session, shot: Shot) -> ShotPicture | None:
    """The shot's own first frame (not a continued take's last frame): see the module's docstring."""
    drawn = approved_picture(session, shot, "first")
    if drawn is not None and drawn.image is not None:
        return ShotPicture(drawn.image.sha256, drawn.image.extension, "drawn", picture_take_id=drawn.id)
    if shot.keyframe is not None:
        return ShotPicture(shot.keyframe.sha256, shot.keyframe.extension, "image")
    character = shot.keyframe_character
    if character is not None and character.references:
        ref = character.references[0]
        return ShotPicture(ref.sha256, ref.media.extension, "character", character=character.name)
    return None


def last_frame(session: Session, shot: Shot) -> ShotPicture | None:
    """The frame the shot ends on, where it has one: see the module's docstring."""
    drawn = approved_picture(session, shot, "last")
    if drawn is not None and drawn.image is not None:
        return ShotPicture(drawn.image.sha256, drawn.image.extension, "drawn", picture_take_id=drawn.id)
    if shot.last_frame is not None:
        return ShotPicture(shot.last_frame.sha256, shot.last_frame.extension, "image")
    if shot.last_frame_from_next:
        following = neighbour(session, shot, +1)
        if following is not None:
            found = first_frame(session, following)
            if found is not None:
                return ShotPicture(found.sha256, found.extension, "next shot", found.picture_take_id, found.character)
    return None


def location(session: Session, shot: Shot) -> ShotPicture | None:
    """The place the shot is set in: its uploaded picture, else the nearest earlier shot's in the same scene."""
    if shot.keyframe is not None:
        return ShotPicture(shot.keyframe.sha256, shot.keyframe.extension, "image")
    if not shot.scene:
        return None
    earlier = session.scalars(
        select(Shot)
        .where(
            Shot.project_id == shot.project_id,
            Shot.scene == shot.scene,
            Shot.position < shot.position,
            Shot.keyframe_sha256.is_not(None),
        )
        .order_by(Shot.position.desc())
        .limit(1)
    ).first()
    if earlier is None or earlier.keyframe is None:
        return None
    return ShotPicture(earlier.keyframe.sha256, earlier.keyframe.extension, "image")


def neighbour(session: Session, shot: Shot, offset: int) -> Shot | None:
    """The shot ``offset`` places after (or before) this one in its storyboard."""
    return session.scalar(
        select(Shot).where(Shot.project_id == shot.project_id, Shot.position == shot.position + offset)
    )


def open_stored(studio: Studio, sha256: str, extension: str) -> Image.Image:
    """A stored picture as a model is given it (upright, 8-bit RGB), carrying its hash for the record."""
    loaded = open_rgb(studio.media.path_for(sha256, extension))
    loaded.info["sha256"] = sha256
    return loaded
