"""Consistency scores for a take: does it show the cast, does it join the previous shot, does it hold steady.

Pure functions over a take's frames (``uint8`` arrays ``(T, H, W, 3)``, as backends return them) and PIL
reference images; every score lies in 0..1, higher is more consistent, and names the embedder it was measured
with (scores from different embedders are never compared). They follow the research definitions, with
whichever embedder is at hand standing in for the model the papers used:

- :func:`identity` -- is it the person: a face recognizer (:mod:`pipelines.faces`, dlib's ResNet) compares the
  faces each sampled frame shows with the character's reference faces, calibrated to the recognizer's own
  same-person threshold and said in words; frames where no face is visible are counted, never blended in.
  Characters whose references show no face (an animal, a robot, a car) are compared on the whole subject.
- :func:`look` -- does it look the same: CLIP-I / DINO-I (DreamBooth's subject fidelity), the cosine between a
  character's reference images and what the take shows (faces and subjects) under a general embedder -- colour,
  texture, costume and lighting, not the person; with an ArcFace face model (:mod:`pipelines.face_model`, which
  a user brings), ArcFace face similarity on the faces.
- :func:`continuity` -- how well the take opens where the previous take ended (keyframe chaining).
- :func:`stability` -- VBench's subject consistency (DINO features), background consistency (CLIP features)
  and temporal flickering (mean absolute difference of consecutive frames).

Nothing here knows of the database: ``projects/`` stores the scores and the embedder id beside the take.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from pipelines.embedders import Embedder, face_crops, subject_crop
from pipelines.faces import DOUBT_SCORE, FaceRecognizer, nearest, same_person, verdict

if TYPE_CHECKING:
    from pipelines.face_model import FaceModel

CONTINUITY_FRAMES = 3
PIXEL_SIDE = 128  # frames are compared pixel by pixel at this longer side (noise-tolerant, and fast on 4K)
SSIM_SIDE = 96


@dataclass(frozen=True)
class IdentityScore:
    """Whether the take shows its characters' people (0..1, higher is better), per character and per frame.

    ``value`` is the mean over characters of ``per_character``. A character with a face is scored on the sampled
    frames where a face is visible: each such frame scores :func:`~pipelines.faces.same_person` of the distance
    between the frame's nearest face and the character's reference faces, and the character scores their mean; a
    character never seen in the face scores 0 ("no face visible"). A character whose references show no face is
    scored on the whole subject by the look embedder. ``characters`` holds, for each name, the score in words
    (``verdict``), the frames with and without a visible face, ``lost_from`` (the second from which the character
    is no longer recognised in any sampled frame, when it was at first) and every sampled frame's second and score.
    """

    value: float
    per_character: dict[str, float]
    characters: dict[str, dict[str, Any]]
    frames_scored: int
    frames_with_faces: int
    embedder: str
    face_model: str


@dataclass(frozen=True)
class LookScore:
    """How much the take looks like its characters' references (0..1, higher is better).

    ``value`` is the mean over characters of ``per_character``; each of those is the mean over the sampled frames
    of the best cosine (clipped at 0) between anything the frame shows and the character's references.
    ``frames_with_faces`` says how many of the ``frames_scored`` frames had a face: where none had, the score
    compared whole subjects, a weaker test of identity. ``face_model`` is the id of the face model that compared
    the faces (ArcFace similarity), ``None`` when the general ``embedder`` compared them too.
    """

    value: float
    per_character: dict[str, float]
    frames_scored: int
    frames_with_faces: int
    embedder: str
    face_model: str | None = None


@dataclass(frozen=True)
class StabilityScore:
    """How steady the take is (0..1, higher is steadier); ``value`` is the mean of the three parts.

    - ``subject``: VBench subject consistency on the centre of the frame (the subject crop).
    - ``background``: the same on whole frames.
    - ``flicker``: VBench temporal flickering, 1 - mean absolute difference of consecutive frames / 255.
    """

    value: float
    subject: float
    background: float
    flicker: float
    frames_scored: int
    embedder: str


def sample_frames(frames: np.ndarray | Sequence[object] | int, count: int = 8) -> list[int]:
    """``count`` frame indices spread evenly over the take, always with the first and the last (all of them
    when the take is shorter). ``frames`` may be the frames or their number."""
    total = frames if isinstance(frames, int) else len(frames)
    if total < 1:
        raise ValueError("a take with no frames cannot be scored")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if total <= count:
        return list(range(total))
    if count == 1:
        return [0]
    return sorted({round(i) for i in np.linspace(0, total - 1, count)})


def look(
    frames: np.ndarray,
    references_by_character: Mapping[str, Sequence[Image.Image]],
    embedder: Embedder,
    *,
    count: int = 8,
    face_model: FaceModel | None = None,
) -> LookScore:
    """CLIP-I / DINO-I similarity of a take to its characters' reference images, 0..1: the look of them.

    Each character's references are embedded once, as two kinds of crop: the faces in them (padded, see
    :func:`~pipelines.embedders.face_crops`) and each reference's subject crop (its centre). For each of
    ``count`` sampled frames, the faces found in the frame are compared with the character's reference faces;
    a frame that shows no face (turned away, too small, cut off by the camera), or a character whose references
    show none (an animal, a robot, a figure from behind), compares the frame's subject crop, the whole frame
    and its left and right halves (the two sides of a two-shot) with all of the character's reference crops.
    Like is compared with like: a frame's torso against a reference's face says little (on the astronaut's
    dolly-in, where the face leaves the frame half-way, comparing those frames only with the reference face
    gave 0.65 against 0.48 for a take of the cat; with subject crops among the references, 0.88 against 0.60).
    A frame's similarity to a character is the best cosine between any candidate and any reference, clipped
    at 0; it is averaged over frames, then over characters.

    With a ``face_model`` (an ArcFace recognizer, :class:`~pipelines.face_model.FaceModel`), faces are compared
    by it instead -- ArcFace face similarity, the cosine of the two faces' embeddings clipped at 0 -- on crops cut
    with the face model's own margin; frames without faces, and characters whose references show none, still
    compare the general embedder's subject and whole-frame crops as above.

    What it means: 1 is the reference itself; with the offline embedder unrelated photographs land around
    0.2-0.6, so compare takes with each other (same embedder and face model), not with a fixed threshold. It
    follows colour, texture and framing -- costume and lighting consistency -- and does not recognise people: on
    real photographs it scored another person in the same photo as high as the same person in another one.
    """
    frames = _check_frames(frames)
    if not references_by_character:
        raise ValueError("identity needs at least one character with reference images")
    for name, references in references_by_character.items():
        if not references:
            raise ValueError(f"character {name!r} has no reference images")
    indices = sample_frames(frames, count)
    face_embedder: Embedder = embedder if face_model is None else face_model
    frame_faces = face_crops if face_model is None else partial(face_crops, pad=face_model.crop_pad)
    faces = _in_parallel(frame_faces, [frames[index] for index in indices])
    wholes = [Image.fromarray(frames[index]) for index in indices]
    face_rows = _embed_groups(face_embedder, faces)
    scene_rows = _embed_groups(embedder, [_scene_crops(whole) for whole in wholes])
    per_character: dict[str, float] = {}
    for name, references in references_by_character.items():
        reference_faces = [crop for reference in references for crop in face_crops(reference)]
        subjects = [subject_crop(reference) for reference in references]
        rows = embedder.embed(reference_faces + subjects)
        face_references, every_reference = rows[: len(reference_faces)], rows
        if face_model is not None and len(reference_faces):
            face_references = face_model.embed([crop for reference in references for crop in frame_faces(reference)])
        best = []
        for found, scene in zip(face_rows, scene_rows, strict=True):
            if len(found) and len(face_references):
                similarity = (found @ face_references.T).max()
            else:
                similarity = (scene @ every_reference.T).max()
            best.append(max(0.0, float(similarity)))
        per_character[name] = _unit_interval(np.mean(best))
    return LookScore(
        value=_unit_interval(np.mean(list(per_character.values()))),
        per_character=per_character,
        frames_scored=len(indices),
        frames_with_faces=sum(1 for found in faces if found),
        embedder=embedder.id,
        face_model=None if face_model is None else face_model.id,
    )


def identity(
    frames: np.ndarray,
    references_by_character: Mapping[str, Sequence[Image.Image]],
    recognizer: FaceRecognizer,
    looks: LookScore,
    *,
    fps: float,
    count: int = 8,
) -> IdentityScore:
    """Whether the take shows each character's person, 0..1, per character and per sampled frame.

    ``count`` frames are sampled evenly (one a second for longer takes, up to 24), so that a long take says from
    which second a character was lost. See :class:`IdentityScore` for how the numbers are made; the faces are
    found, aligned and compared by ``recognizer``. Characters whose references show no face are compared on the
    whole subject: their score is the one ``looks`` (the take's :func:`look`, measured once for both) gives them.
    """
    frames = _check_frames(frames)
    if not references_by_character:
        raise ValueError("identity needs at least one character with reference images")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    for name, references in references_by_character.items():
        if not references:
            raise ValueError(f"character {name!r} has no reference images")
    indices = sample_frames(frames, max(count, min(24, round(len(frames) / fps))))
    known = {
        name: [face.descriptor for reference in references for face in recognizer.reference_faces(reference)[:1]]
        for name, references in references_by_character.items()
    }
    people = {name: rows for name, rows in known.items() if rows}
    seen = [recognizer.faces(frames[index]) for index in indices] if people else [[] for _ in indices]
    per_character: dict[str, float] = {}
    characters: dict[str, dict[str, Any]] = {}
    for name in references_by_character:
        if name not in people:
            if name not in looks.per_character:
                raise ValueError(f"the look score has no part for {name!r}, whose references show no face")
            per_character[name] = looks.per_character[name]
            characters[name] = {"score": round(per_character[name], 4), "verdict": "whole subject", "face": False}
            continue
        scores = [None if (d := nearest(faces, people[name])) is None else same_person(d) for faces in seen]
        visible = [score for score in scores if score is not None]
        mean = float(np.mean(visible)) if visible else None
        per_character[name] = mean or 0.0
        characters[name] = {
            "score": round(per_character[name], 4),
            "verdict": verdict(mean),
            "face": True,
            "frames_with_face": len(visible),
            "frames_without_face": len(scores) - len(visible),
            "lost_from": _lost_from(indices, scores, fps),
            "frames": [
                {"second": round(index / fps, 2), "score": None if score is None else round(score, 4)}
                for index, score in zip(indices, scores, strict=True)
            ],
        }
    return IdentityScore(
        value=_unit_interval(np.mean(list(per_character.values()))),
        per_character={name: _unit_interval(value) for name, value in per_character.items()},
        characters=characters,
        frames_scored=len(indices),
        frames_with_faces=sum(1 for faces in seen if faces),
        embedder=recognizer.id,
        face_model=recognizer.id,
    )


def _lost_from(indices: Sequence[int], scores: Sequence[float | None], fps: float) -> float | None:
    """The second from which a character recognised earlier in the take is recognised in no sampled frame (not
    visible, or another person), or None when that never happens."""
    recognised = [score is not None and score > DOUBT_SCORE for score in scores]
    if not any(recognised) or recognised[-1]:
        return None
    last = max(i for i, ok in enumerate(recognised) if ok)
    return round(indices[last + 1] / fps, 2)


def continuity(
    first_frames: np.ndarray,
    previous_last_frame: np.ndarray,
    embedder: Embedder,
    *,
    k: int = CONTINUITY_FRAMES,
) -> float:
    """How well the take opens where the previous take ended, 0..1 (1: it starts on that very frame).

    The mean over the take's first ``k`` frames of two equal terms, each against the previous take's last frame:
    the cosine of their embeddings (clipped at 0), which forgives a small camera move or a lighting change but
    not a different subject; and the SSIM of the two in grey at 96 px, which catches what an embedding forgives --
    a jump in framing or position at the cut. SSIM rather than 1 - mean absolute difference because the latter
    rated pairs of unrelated photographs' frames at 0.65-0.80, leaving little room between a match and a jump;
    SSIM compares local structure and put the same pairs at 0.07-0.25. Frames of another size than the
    previous take's are compared at this take's aspect ratio.
    """
    frames = _check_frames(first_frames)[: max(1, k)]
    previous = np.asarray(previous_last_frame)
    previous = _check_frames(previous[None] if previous.ndim == 3 else previous)[-1]
    rows = embedder.embed([Image.fromarray(frame) for frame in frames] + [Image.fromarray(previous)])
    semantic = np.clip(rows[:-1] @ rows[-1], 0.0, 1.0)
    height, width = frames.shape[1:3]
    size = _fit(width, height, SSIM_SIDE)
    target = _grey(previous, size)
    structural = [max(0.0, _ssim(_grey(frame, size), target)) for frame in frames]
    return _unit_interval(0.5 * float(np.mean(semantic)) + 0.5 * float(np.mean(structural)))


def stability(frames: np.ndarray, embedder: Embedder, *, count: int = 16) -> StabilityScore:
    """VBench-style steadiness of a take, 0..1: subject consistency, background consistency, temporal flickering.

    Consistency is VBench's: for each frame after the first, the mean of its cosine to the first frame (has the
    subject drifted?) and to the frame before (did it jump?), averaged over frames -- on subject crops for the
    subject part and on whole frames for the background part, over ``count`` evenly sampled frames. Flickering
    is 1 - the mean absolute difference between every pair of consecutive frames / 255, on frames scaled to
    128 px (VBench measures it on static scenes; a camera move costs a little, a cut or flicker a lot).
    Shuffled frames, frames blended with noise and flashes all score lower than a smooth camera move; shuffles
    mostly through flickering, since a shuffled take's first frame is a middle one, which the rest resemble
    about as well as a smooth take's frames resemble its first. A take of one frame is perfectly stable.
    """
    frames = _check_frames(frames)
    indices = sample_frames(frames, count)
    wholes = [Image.fromarray(frames[index]) for index in indices]
    subject = _vbench_consistency(embedder.embed([subject_crop(whole) for whole in wholes]))
    background = _vbench_consistency(embedder.embed(wholes))
    flicker = _temporal_flickering(frames)
    return StabilityScore(
        value=_unit_interval((subject + background + flicker) / 3),
        subject=subject,
        background=background,
        flicker=flicker,
        frames_scored=len(indices),
        embedder=embedder.id,
    )


def _in_parallel(function: Any, items: list[Any]) -> list[Any]:
    """``[function(item) for item in items]`` on every core: OpenCV's cascades release the GIL, and face
    detection is most of the time a score takes."""
    workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def _vbench_consistency(rows: np.ndarray) -> float:
    if len(rows) < 2:
        return 1.0
    to_first = rows[1:] @ rows[0]
    to_previous = np.einsum("ij,ij->i", rows[1:], rows[:-1])
    return _unit_interval(np.mean((np.clip(to_first, 0, 1) + np.clip(to_previous, 0, 1)) / 2))


def _temporal_flickering(frames: np.ndarray) -> float:
    if len(frames) < 2:
        return 1.0
    height, width = frames.shape[1:3]
    size = _fit(width, height, PIXEL_SIDE)
    small = np.stack([_resize(frame, size) for frame in frames]).astype(np.int16)
    difference = np.abs(np.diff(small, axis=0)).mean()
    return _unit_interval(1.0 - difference / 255.0)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two grey images (Wang et al. 2004: Gaussian window, sigma 1.5)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (7, 7), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * covariance + c2)
    denominator = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(numerator / denominator))


def _scene_crops(whole: Image.Image) -> list[Image.Image]:
    """Where a subject without a visible face may stand: the centre, everywhere, and either side of a two-shot
    (the halves overlap by a tenth, so a subject in the middle is whole in one of them)."""
    width, height = whole.size
    left = whole.crop((0, 0, round(width * 0.55), height))
    right = whole.crop((round(width * 0.45), 0, width, height))
    return [subject_crop(whole), whole, left, right]


def _embed_groups(embedder: Embedder, groups: list[list[Image.Image]]) -> list[np.ndarray]:
    """Embed lists of crops in one batch and split the rows back into their lists."""
    flat = [crop for group in groups for crop in group]
    rows = embedder.embed(flat) if flat else np.zeros((0, 0), dtype=np.float32)
    split, start = [], 0
    for group in groups:
        split.append(rows[start : start + len(group)])
        start += len(group)
    return split


def _check_frames(frames: np.ndarray | None) -> np.ndarray:
    array = None if frames is None else np.asarray(frames)
    if array is None or array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or not len(array):
        shown = "nothing" if array is None else f"{array.dtype} {array.shape}"
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with at least one frame, got {shown}")
    return array


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    return max(8, round(width * scale)), max(8, round(height * scale))


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _grey(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.cvtColor(_resize(frame, size), cv2.COLOR_RGB2GRAY)


def _unit_interval(value: float) -> float:
    return float(min(1.0, max(0.0, value)))
