"""What a take starts from: its pictures, resolved when its job starts, and the generation request built from them.

A shot's first frame is, in order: for a shot that continues the previous one, the last frame of the previous
shot's chosen take (:func:`projects.takes.source_take_for`: its approved take, else its newest finished one),
taken now rather than when the take was queued; else the shot's own keyframe; else its keyframe character's first
reference image. The shot's characters add their first reference images, as many as the backend takes. A take
rendered again (:func:`projects.render_queue.render_again`) starts from exactly the pictures of the original.

The pictures are recorded as the take's inputs, by SHA-256, in the transaction that resolves them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from pipelines.backend import GenerationRequest
from pipelines.registry import backend_class
from pipelines.video import last_frame
from projects import shot_pictures
from projects.render_queue import RenderSettings
from projects.studio import Studio
from projects.takes import source_take_for
from storage.models import MediaObject, Shot, Take, TakeInput


class JobFailed(Exception):
    """A job could not be rendered; the message is shown to the user as the take's error."""


@dataclass(frozen=True)
class Inputs:
    keyframe: tuple[str, str] | None  # (sha256, extension)
    last_frame: tuple[str, str] | None
    references: tuple[tuple[str, str, int | None], ...]  # (sha256, extension, character id)
    source_take_id: int | None


def prepare(studio: Studio, session: Session, take: Take) -> GenerationRequest:
    """Resolve and record the take's pictures, and the request its backend renders."""
    shot = take.shot
    settings = RenderSettings.from_params(take.params.get("settings", {}))
    pinned = take.params.get("pinned_inputs")
    inputs = _pinned(session, pinned) if pinned else _resolve(studio, session, shot, take)
    take.source_take_id = inputs.source_take_id
    session.execute(TakeInput.__table__.delete().where(TakeInput.take_id == take.id))
    if inputs.keyframe:
        session.add(TakeInput(take_id=take.id, role="keyframe", position=0, sha256=inputs.keyframe[0]))
    if inputs.last_frame:
        session.add(TakeInput(take_id=take.id, role="last_frame", position=0, sha256=inputs.last_frame[0]))
    for position, (sha256, _ext, character_id) in enumerate(inputs.references):
        session.add(
            TakeInput(take_id=take.id, role="reference", position=position, sha256=sha256, character_id=character_id)
        )
    take.params = {**take.params, "requested_frames": take.params.get("requested_frames", take.num_frames)}
    return GenerationRequest(
        prompt=take.prompt,
        width=take.width,
        height=take.height,
        fps=take.fps,
        num_frames=take.params["requested_frames"],
        seed=take.seed,
        keyframe=_image(studio, inputs.keyframe),
        last_frame=_image(studio, inputs.last_frame),
        references=tuple(_image(studio, (sha, ext)) for sha, ext, _ in inputs.references),
        negative_prompt=settings.negative_prompt,
        camera=take.params.get("camera", shot.camera),
        steps=settings.steps,
        guidance=settings.guidance,
        refiner=settings.refiner_settings(),
        caption=take.params.get("title", "") if settings.caption else "",
    )


def _resolve(studio: Studio, session: Session, shot: Shot, take: Take) -> Inputs:
    keyframe: tuple[str, str] | None = None
    source_take_id = None
    if shot.continue_from_previous and shot.position > 1:
        source = source_take_for(session, shot)
        if source is not None:
            keyframe = _last_frame_of(studio, session, source)
            source_take_id = source.id
        elif shot.keyframe_sha256 is None and shot.keyframe_character_id is None:
            raise JobFailed(
                f"shot {shot.position} continues from shot {shot.position - 1}, which has no finished take yet; "
                f"render shot {shot.position - 1} first"
            )
    if keyframe is None:
        own = shot_pictures.first_frame(session, shot)
        keyframe = (own.sha256, own.extension) if own is not None else None
    caps = backend_class(take.backend).capabilities
    ending = shot_pictures.last_frame(session, shot) if caps.last_frame else None
    references: list[tuple[str, str, int | None]] = []
    capacity = caps.reference_images
    for character in shot.characters:
        if len(references) >= capacity:
            break
        if character.references:
            ref = character.references[0]
            references.append((ref.sha256, ref.media.extension, character.id))
    last = (ending.sha256, ending.extension) if ending is not None else None
    return Inputs(keyframe, last, tuple(references), source_take_id)


def _pinned(session: Session, pinned: dict[str, Any]) -> Inputs:
    """The exact pictures of the take being rendered again."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for item in pinned.get("inputs", []):
        by_role.setdefault(item["role"], []).append(item)

    def media(sha256: str) -> tuple[str, str]:
        row = session.get(MediaObject, sha256)
        if row is None:
            raise JobFailed(f"an input picture of the original take ({sha256[:12]}) is no longer stored")
        return row.sha256, row.extension

    keyframe = media(by_role["keyframe"][0]["sha256"]) if by_role.get("keyframe") else None
    last = media(by_role["last_frame"][0]["sha256"]) if by_role.get("last_frame") else None
    refs = tuple(
        (*media(item["sha256"]), item.get("character_id"))
        for item in sorted(by_role.get("reference", []), key=lambda item: item["position"])
    )
    return Inputs(keyframe, last, refs, pinned.get("source_take_id"))


def _last_frame_of(studio: Studio, session: Session, source: Take) -> tuple[str, str]:
    video = source.video
    if video is None:
        raise JobFailed(f"take {source.id} has no video to continue from")
    problem = studio.media.check(video.sha256, video.extension)
    if problem:
        raise JobFailed(f"the video of take {source.id}, which this shot continues from, is {problem}")
    frame = last_frame(studio.media.path_for(video.sha256, video.extension))
    buffer = io.BytesIO()
    frame.save(buffer, format="PNG")
    stored = studio.store_bytes(session, buffer.getvalue(), "png")
    return stored.sha256, stored.extension


def _image(studio: Studio, media: tuple[str, str] | None) -> Image.Image | None:
    return shot_pictures.open_stored(studio, *media) if media is not None else None
