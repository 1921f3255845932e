"""Consistency scores: whether each take keeps its characters' people and look, continues from the shot before,
and holds steady -- numbers to sort by, so re-rolling a shot becomes a search with a target instead of luck.

Four scores, each in 0..1 (see :mod:`pipelines.consistency` for the exact definitions):

- ``identity``: whether the take shows each character's person: a face recognizer (dlib's ResNet, calibrated to
  its same-person threshold, 0.5 there) on the faces of sampled frames against the character's reference faces,
  with a verdict in words per character (same person, unsure, different person, no face visible) and the frames
  behind it; characters without a face (an animal, a robot) on the whole subject;
- ``look``: how closely the take looks like the references (colour, texture, shape: costume and lighting), under
  the general embedder;
- ``continuity``: how well the take's first frames match the last frame of the take it continues from (the
  previous shot's approved take, else its newest finished one); for a shot that does not continue, the same
  measure against the previous shot's current take says how hard the cut is;
- ``stability``: frame-to-frame steadiness of subject and background (VBench's subject and background
  consistency and temporal flickering), which catches flicker, drift and, in long shots, visible window joins.

A score records the model that made it; scores of different models are never compared. Look, continuity and
stability are stored under the general embedder's id; identity under ``"{embedder id}+{face model id}"`` (the
embedder scores characters without a face). The face model is dlib's, unless ``$CONTINUITY_FACE_MODEL`` names an
ArcFace ``.onnx`` file (:mod:`pipelines.face_model`), which then compares the faces instead, as a look-style cosine
(see :func:`pipelines.consistency.look`). The overall score a shot's takes are ranked by is the mean of the scores
a take has.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipelines.backend import BackendError
from pipelines.consistency import continuity, identity, look, stability
from pipelines.embedders import Embedder, load_embedder
from pipelines.face_model import FaceModel, load_face_model
from pipelines.faces import FaceRecognizer, load_face_recognizer
from pipelines.pictures import open_rgb
from pipelines.video import last_frame, read_frames
from projects import queries
from projects.errors import Conflict, InvalidInput
from projects.records import TakeInfo
from projects.studio import Studio
from projects.takes import approve_take, source_take_for
from storage.models import SCORE_METRICS, Character, Shot, Take, TakeScore

log = logging.getLogger(__name__)

EMBEDDER_ENV = "CONTINUITY_EMBEDDER"


@dataclass(frozen=True)
class TakeScores:
    take_id: int
    shot_number: int
    take_number: int
    embedder: str
    scores: dict[str, float]
    details: dict[str, Any]
    approved: bool = False

    @property
    def overall(self) -> float | None:
        return float(np.mean(list(self.scores.values()))) if self.scores else None

    @property
    def verdicts(self) -> dict[str, str]:
        """Each character's identity in words (same person, unsure, different person, no face visible, whole
        subject); empty where identity was not measured by the face recognizer."""
        characters = (self.details.get("identity") or {}).get("characters") or {}
        return {name: str(part.get("verdict")) for name, part in characters.items()}

    def cast_line(self) -> str:
        """``Mara: same person; Tom: no face visible``, for a table cell or a line of text."""
        return "; ".join(f"{name}: {said}" for name, said in self.verdicts.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "take_id": self.take_id,
            "shot_number": self.shot_number,
            "take_number": self.take_number,
            "embedder": self.embedder,
            "identity": _rounded(self.scores.get("identity")),
            "look": _rounded(self.scores.get("look")),
            "continuity": _rounded(self.scores.get("continuity")),
            "stability": _rounded(self.scores.get("stability")),
            "overall": _rounded(self.overall),
            "approved": self.approved,
            "details": self.details,
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def default_embedder_name() -> str:
    """``$CONTINUITY_EMBEDDER`` (a CLIP, DINOv2 or SigLIP folder or hub id), else the offline descriptors."""
    return os.environ.get(EMBEDDER_ENV) or "offline"


def embedder_for(name: str | None) -> Embedder:
    try:
        return load_embedder(name or default_embedder_name())
    except BackendError as exc:
        raise InvalidInput(str(exc), "embedder") from None


def face_model_for() -> FaceModel | FaceRecognizer:
    """The ArcFace model ``$CONTINUITY_FACE_MODEL`` names when it is set, else dlib's face recognizer (each loaded
    once, then shared)."""
    try:
        return load_face_model(None) or load_face_recognizer()
    except BackendError as exc:
        raise InvalidInput(str(exc), "face model") from None


def identity_embedder_id(embedder_id: str, face_model: FaceModel | FaceRecognizer | None) -> str:
    """The id identity scores are stored under: the embedder's, joined by the face model's when one is used."""
    if face_model is None or embedder_id.endswith(f"+{face_model.id}"):
        return embedder_id
    return f"{embedder_id}+{face_model.id}"


def score_take(
    studio: Studio,
    take_id: int,
    *,
    embedder: str | None = None,
    frames: np.ndarray | None = None,
) -> TakeScores:
    """Compute and store a finished take's scores (replacing earlier ones from the same embedder).

    ``frames`` may be given when they are at hand (the worker has them in memory); otherwise the take's video
    is decoded. With a face model configured, identity is stored under :func:`identity_embedder_id` and
    replaces only the identity from the same embedder and face model.
    """
    model = embedder_for(embedder)
    face_model = face_model_for()
    identity_id = identity_embedder_id(model.id, face_model)
    with studio.read() as session:
        take = queries.get_take(session, take_id)
        if take.status != "done" or take.video is None:
            raise InvalidInput(f"take {take_id} is {take.status}; only a finished take can be scored", "take")
        shot = take.shot
        video = studio.media.path_for(take.video.sha256, take.video.extension)
        problem = studio.media.check(take.video.sha256, take.video.extension) if frames is None else None
        if problem:
            raise Conflict(
                f"the video of take {take_id} (shot {shot.position}) is {problem}; run verify, then render the take "
                "again or delete it"
            )
        references = references_of(studio, shot.characters)
        previous, chained = _previous_take(session, shot, take)
        previous_video = (
            studio.media.path_for(previous.video.sha256, previous.video.extension)
            if previous is not None and previous.video is not None
            else None
        )
        # A chained take's keyframe is the previous take's last frame, already extracted: no need to decode.
        keyframes = [i for i in take.inputs if i.role == "keyframe"]
        anchor_path = (
            studio.media.path_for(keyframes[0].sha256, keyframes[0].media.extension) if chained and keyframes else None
        )
        shot_number, take_number, fps = shot.position, take.take_number, take.fps
    if frames is None:
        frames = read_frames(video)
    scores: dict[str, float] = {}
    details: dict[str, Any] = {}
    if references:
        appearance = look(frames, references, model)
        scores["look"] = _clip01(appearance.value)
        details["look"] = _details(appearance)
        if isinstance(face_model, FaceRecognizer):
            person = identity(frames, references, face_model, appearance, fps=fps)
        else:
            person = look(frames, references, model, face_model=face_model)
        scores["identity"] = _clip01(person.value)
        details["identity"] = _details(person)
    if previous_video is not None:
        if anchor_path is not None:
            anchor = np.asarray(open_rgb(anchor_path))
        else:
            anchor = np.asarray(last_frame(previous_video).convert("RGB"))
        scores["continuity"] = _clip01(continuity(frames, anchor, model))
        details["continuity"] = {"previous_take_id": previous.id if previous else None, "chained": chained}
    result = stability(frames, model)
    scores["stability"] = _clip01(result.value)
    details["stability"] = _details(result)
    with studio.write() as session:
        take = queries.get_take(session, take_id)
        stale = TakeScore.embedder == model.id
        if identity_id != model.id:  # identity without the face model stays: it is another measure
            stale = (stale & (TakeScore.metric != "identity")) | (TakeScore.embedder == identity_id)
        session.execute(delete(TakeScore).where(TakeScore.take_id == take_id, stale))
        for metric, value in scores.items():
            session.add(
                TakeScore(
                    take_id=take_id,
                    embedder=identity_id if metric == "identity" else model.id,
                    metric=metric,
                    value=value,
                    details=details.get(metric, {}),
                )
            )
        approved = take.approved
    return TakeScores(take_id, shot_number, take_number, model.id, scores, details, approved)


def score_project(
    studio: Studio,
    project: str | int,
    *,
    shot_number: int | None = None,
    embedder: str | None = None,
    rescore: bool = False,
) -> list[TakeScores]:
    """Scores of every finished take (of one shot, or the whole project), computing those not yet scored with
    this embedder (or all of them with ``rescore``). A take of a shot with characters needs both its look and its
    identity by the face model now configured: one scored only with another face model, or with none (identity
    scored before faces were recognised is look now), or scored before look existed, is scored again."""
    model = embedder_for(embedder)
    identity_id = identity_embedder_id(model.id, face_model_for())
    with studio.read() as session:
        row = queries.find_project(session, project)
        query = select(Take.id).join(Shot).where(Shot.project_id == row.id, Take.status == "done")
        if shot_number is not None:
            query = query.where(Shot.id == queries.shot_at(session, row, shot_number).id)
        take_ids = list(session.scalars(query.order_by(Shot.position, Take.take_number)))
        marks: dict[int, set[tuple[str, str]]] = {}
        for take_id, embedder_id, metric in session.execute(
            select(TakeScore.take_id, TakeScore.embedder, TakeScore.metric).where(
                TakeScore.take_id.in_(take_ids),
                (TakeScore.embedder == model.id) | TakeScore.embedder.startswith(f"{model.id}+", autoescape=True),
            )
        ):
            marks.setdefault(take_id, set()).add((embedder_id, metric))
        scored = {take_id for take_id, found in marks.items() if _complete(found, model.id, identity_id)}
    for take_id in take_ids:
        if rescore or take_id not in scored:
            score_take(studio, take_id, embedder=embedder)
    return stored_scores(studio, take_ids, embedder=model.id)


def _complete(found: set[tuple[str, str]], embedder_id: str, identity_id: str) -> bool:
    """Whether a take's stored (embedder, metric) pairs are all it needs: something under the embedder, and where
    the shot had characters to compare (a look or an identity says so), both look and the current identity."""
    if not any(embedder == embedder_id for embedder, _ in found):
        return False
    had_characters = any(metric in ("identity", "look") for _, metric in found)
    return not had_characters or {(embedder_id, "look"), (identity_id, "identity")} <= found


def scored_takes(studio: Studio, take_ids: Sequence[int]) -> set[int]:
    """Which of these takes have scores stored (by any model): the worker scores a take just after finishing it."""
    if not take_ids:
        return set()
    with studio.read() as session:
        return set(session.scalars(select(TakeScore.take_id).where(TakeScore.take_id.in_(list(take_ids))).distinct()))


def stored_scores(studio: Studio, take_ids: Sequence[int], *, embedder: str | None = None) -> list[TakeScores]:
    """The stored scores of these takes under one embedder (the default one unless named); identity under that
    embedder joined with the configured face model, when one is."""
    embedder_id = embedder or embedder_for(None).id
    identity_id = identity_embedder_id(embedder_id, face_model_for())
    with studio.read() as session:
        rows = session.scalars(
            select(TakeScore).where(
                TakeScore.take_id.in_(list(take_ids)), TakeScore.embedder.in_({embedder_id, identity_id})
            )
        ).all()
        by_take: dict[int, list[TakeScore]] = {}
        for score in rows:
            wanted = identity_id if score.metric == "identity" else embedder_id
            if score.embedder == wanted:
                by_take.setdefault(score.take_id, []).append(score)
        out = []
        for take_id in take_ids:
            take = session.get(Take, take_id)
            if take is None:
                continue
            found = by_take.get(take_id, [])
            out.append(
                TakeScores(
                    take_id,
                    take.shot.position,
                    take.take_number,
                    embedder_id,
                    {s.metric: s.value for s in found},
                    {s.metric: s.details for s in found},
                    take.approved,
                )
            )
        return out


def rank_takes(
    studio: Studio, project: str | int, shot_number: int, *, metric: str = "overall", embedder: str | None = None
) -> list[TakeScores]:
    """A shot's scored takes, best first, by one metric (or ``overall``) under one embedder."""
    if metric not in (*SCORE_METRICS, "overall"):
        raise InvalidInput(f"must be one of {', '.join((*SCORE_METRICS, 'overall'))}, got {metric!r}", "metric")
    scores = score_project(studio, project, shot_number=shot_number, embedder=embedder)

    def key(item: TakeScores) -> float:
        value = item.overall if metric == "overall" else item.scores.get(metric)
        return -1.0 if value is None else value

    return sorted(scores, key=key, reverse=True)


def best_per_shot(scores: Sequence[TakeScores]) -> dict[int, TakeScores]:
    """Shot number to its best-scored take (by the mean of its scores) among ``scores``; unscored takes never win."""
    best: dict[int, TakeScores] = {}
    for item in scores:
        current = best.get(item.shot_number)
        if item.overall is not None and (current is None or item.overall > (current.overall or 0.0)):
            best[item.shot_number] = item
    return best


def approve_best(
    studio: Studio, project: str | int, *, embedder: str | None = None, keep_approved: bool = True
) -> list[TakeInfo]:
    """Approve the best-scoring take of each shot, in storyboard order; returns the takes approved now.

    A shot that continues from the previous one only considers takes that started from the take it would start
    from now (:func:`projects.takes.source_take_for`, read after the approvals made for the shots before it); a
    shot with none such is left for the user to render again. With ``keep_approved`` a shot's approval is kept,
    unless it no longer continues from the take before it.
    """
    scored: dict[int, list[TakeScores]] = {}
    for item in score_project(studio, project, embedder=embedder):
        scored.setdefault(item.shot_number, []).append(item)
    made: list[TakeInfo] = []
    with studio.read() as session:
        row = queries.find_project(session, project)
        shot_ids = list(session.scalars(select(Shot.id).where(Shot.project_id == row.id).order_by(Shot.position)))
    for shot_id in shot_ids:
        with studio.read() as session:
            shot = queries.get_shot(session, shot_id)
            number, chained = shot.position, shot.continue_from_previous and shot.position > 1
            source = source_take_for(session, shot) if chained else None
            source_id = source.id if source is not None else None
            source_of = {take.id: take.source_take_id for take in shot.takes}
            approved = next((take.id for take in shot.takes if take.approved), None)
        if keep_approved and approved is not None and (not chained or source_of.get(approved) == source_id):
            continue
        starts = [item for item in scored.get(number, []) if not chained or source_of.get(item.take_id) == source_id]
        best = best_per_shot(starts).get(number)
        if best is not None and best.take_id != approved:
            made.append(approve_take(studio, best.take_id))
    return made


def suggest_take(studio: Studio, project: str | int, shot_number: int, *, embedder: str | None = None) -> int | None:
    """The take to approve: the best overall score among the shot's finished takes (None when it has none)."""
    ranked = rank_takes(studio, project, shot_number, embedder=embedder)
    return ranked[0].take_id if ranked else None


def score_finished_take(studio: Studio, take_id: int, frames: np.ndarray) -> TakeScores | None:
    """Score a take the worker just finished; a failure here never fails the take (it is logged)."""
    try:
        return score_take(studio, take_id, frames=frames)
    except Exception:
        log.exception("could not score take %s", take_id)
        return None


def references_of(studio: Studio, characters: Sequence[Character]) -> dict[str, list[Image.Image]]:
    """Each character's reference pictures, by name (characters without any are left out): what a take or a drawn
    picture is scored against."""
    found: dict[str, list[Image.Image]] = {}
    for character in characters:
        images = []
        for ref in character.references:
            images.append(open_rgb(studio.media.path_for(ref.sha256, ref.media.extension)))
        if images:
            found[character.name] = images
    return found


def _previous_take(session: Session, shot: Shot, take: Take) -> tuple[Take | None, bool]:
    """The take this one continued from when it was chained, else the previous shot's current take."""
    if take.source_take_id is not None:
        source = session.get(Take, take.source_take_id)
        if source is not None and source.status == "done":
            return source, True
    if shot.position == 1:
        return None, False
    return source_take_for(session, shot), False


def _details(result: Any) -> dict[str, Any]:
    """A score's parts as JSON: numbers rounded, dictionaries (per character, per frame) kept whole."""
    shown = {}
    for key, value in vars(result).items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            shown[key] = value
        elif isinstance(value, dict):
            shown[key] = {str(k): (round(v, 4) if isinstance(v, float) else v) for k, v in value.items()}
    return shown


def _clip01(value: float) -> float:
    return float(min(1.0, max(0.0, value)))
