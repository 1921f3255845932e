"""What a keyframe candidate (or a character's view) is drawn from, and how it scores against the cast.

A shot's candidate is drawn from its characters (each with its reference pictures, first is best, and its
description) set in its location (:func:`projects.shot_pictures.location`); a first frame with no location of its
own is set in the previous shot's first frame, so the place carries over from shot to shot. A character's view
is drawn from that character's references alone. The pictures are resolved when the job starts and recorded as
the picture take's inputs, by SHA-256, in the transaction that resolves them.

A drawn picture is scored as soon as it is drawn: identity (the face model's verdict for each character in the
picture, against that character's references), look (costume and colour), and for a first frame, continuity
with the previous shot's first frame. A failure to score never fails the drawing.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from pipelines.consistency import continuity, identity, look
from pipelines.faces import FaceRecognizer
from pipelines.keyframes import PictureRequest, Subject
from pipelines.pictures import open_rgb
from projects import scoring, shot_pictures
from projects.studio import Studio
from storage.models import Character, PictureInput, PictureTake

log = logging.getLogger(__name__)


def prepare(studio: Studio, session: Session, picture: PictureTake) -> PictureRequest:
    """Resolve and record the pictures ``picture`` is drawn from, and the request its backend draws."""
    settings = picture.params.get("settings", {})
    scene, scene_kind = None, ""
    if picture.shot is not None:
        characters = list(picture.shot.characters)
        found = shot_pictures.location(session, picture.shot)
        scene_kind = "location"
        if found is None and picture.role == "first" and picture.shot.position > 1:
            previous = shot_pictures.neighbour(session, picture.shot, -1)
            found = shot_pictures.first_frame(session, previous) if previous is not None else None
            scene_kind = "previous keyframe"
        if found is not None:
            scene = (found.sha256, found.extension)
        view = None
    else:
        assert picture.character is not None
        characters, view = [picture.character], picture.role
    session.execute(PictureInput.__table__.delete().where(PictureInput.picture_take_id == picture.id))
    subjects = []
    position = 0
    for character in characters:
        pictures = []
        for ref in character.references:
            session.add(
                PictureInput(
                    picture_take_id=picture.id,
                    role="subject",
                    position=position,
                    sha256=ref.sha256,
                    character_id=character.id,
                )
            )
            position += 1
            pictures.append(shot_pictures.open_stored(studio, ref.sha256, ref.media.extension))
        subjects.append(Subject(character.name, character.description, tuple(pictures)))
    if scene is not None:
        session.add(PictureInput(picture_take_id=picture.id, role="scene", position=position, sha256=scene[0]))
    return PictureRequest(
        prompt=picture.prompt,
        width=picture.width,
        height=picture.height,
        seed=picture.seed,
        subjects=tuple(subjects),
        scene=shot_pictures.open_stored(studio, *scene) if scene is not None else None,
        scene_kind=scene_kind if scene is not None else "",
        view=view,
        negative_prompt=settings.get("negative_prompt", ""),
        steps=settings.get("steps"),
        guidance=settings.get("guidance"),
    )


def score(studio: Studio, picture_id: int, image: Image.Image) -> dict[str, Any]:
    """The scores of a drawn picture (see the module's docstring); empty when it cannot be scored."""
    try:
        return _score(studio, picture_id, image)
    except Exception:
        log.exception("could not score keyframe candidate %s", picture_id)
        return {}


def _score(studio: Studio, picture_id: int, image: Image.Image) -> dict[str, Any]:
    with studio.read() as session:
        picture = session.get(PictureTake, picture_id)
        if picture is None:
            return {}
        characters: list[Character] = list(picture.shot.characters) if picture.shot is not None else []
        if picture.character is not None:
            characters = [picture.character]
        references = scoring.references_of(studio, characters)
        anchor = None
        if picture.shot is not None and picture.role == "first" and picture.shot.position > 1:
            previous = shot_pictures.neighbour(session, picture.shot, -1)
            found = shot_pictures.first_frame(session, previous) if previous is not None else None
            if found is not None:
                anchor = open_rgb(studio.media.path_for(found.sha256, found.extension))
    frames = np.asarray(image.convert("RGB"))[None]
    embedder = scoring.embedder_for(None)
    scores: dict[str, Any] = {"embedder": embedder.id}
    if references:
        looks = look(frames, references, embedder, count=1)
        scores["look"] = round(float(looks.value), 4)
        recognizer = scoring.face_model_for()
        if isinstance(recognizer, FaceRecognizer):
            person = identity(frames, references, recognizer, looks, fps=1.0, count=1)
            scores["identity"] = round(float(person.value), 4)
            scores["characters"] = {
                name: {"score": part["score"], "verdict": part["verdict"]} for name, part in person.characters.items()
            }
            scores["face_model"] = recognizer.id
    if anchor is not None:
        scores["continuity"] = round(float(continuity(frames, np.asarray(anchor), embedder, k=1)), 4)
    return scores
