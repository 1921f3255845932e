"""The compose keyframe backend: a shot's first frame laid out from the cast's reference photographs, on the CPU.

A storyboard frame made the way a storyboard artist would paste one up: each character in the shot is cut out of
one of their reference photographs and stood in the scene (the location picture or the previous shot's
keyframe, cover-fitted to the project's size; without one, a plain backdrop). It is the studio's default where
there is no GPU or no weights for the edit models, so the keyframe workflow -- candidates, scores, approval,
chaining into a video take -- works everywhere, and because the faces are the characters' own photographs the
identity score of a candidate means something.

How a character is cut out of its reference:

- where dlib finds a face (:mod:`pipelines.faces`), a head-and-shoulders cut around it (1.6 face widths each side,
  room for hair above and the chest below), the person separated from the photograph's background by OpenCV's
  GrabCut seeded from the face (face and chest are the person, the upper corners are not), with soft edges;
- where no face is found (an animal, a robot, a prop), the subject, by GrabCut from a central rectangle;
- where that fails, the whole photograph with a feathered edge.

How they are placed: evenly from left to right in the order the shot lists them, standing on the frame's bottom
edge, smaller as more share the frame (a face stays large enough for the face detector to find it again with up
to three characters at 640x384). The seed picks among a character's references and moves and scales each a
little, so seeds give different candidates; the same request and seed give the same pixels.

Compose reframes photographs: it cannot turn a head, so of a character sheet it draws the front and full-figure
views only; the three-quarter and profile views are refused with a pointer to the edit models.

The module is longer than 500 lines because cutting a character out and laying it into the frame are one job,
tuned together: the layout scales and spaces figures by the face box and the visible outline the cut leaves, and
the cut's soft edges and fades are sized for the scales the layout uses.
"""

from __future__ import annotations

import colorsys
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipelines.backend import CancelToken, GenerationCancelled, ProgressFn, RequestError
from pipelines.faces import FaceRecognizer, FaceRecognizerMissing, load_face_recognizer
from pipelines.keyframes import VIEWS, PictureBackend, PictureCapabilities, PictureRequest, PictureResult
from pipelines.pictures import to_rgb

logger = logging.getLogger(__name__)

STAGE = "keyframe"

# How tall a character stands, as a fraction of the frame's height, by how many share the frame.
HEIGHT_BY_COUNT = {1: 0.85, 2: 0.7, 3: 0.6}
HEIGHT_MANY = 0.5
VIEW_HEIGHT = {"front": 0.86, "full-figure": 0.72}

# A head-and-shoulders cut around dlib's face box (eyebrows to chin), in face widths and heights.
CUT_SIDE = 1.6
CUT_ABOVE = 1.0
CUT_BELOW = 2.4
FIGURE_SIDE = 2.4  # a whole figure (a character sheet's full-figure view) is looked for this far each side
HAIR = 0.65  # how far hair or a hat reaches above the box
CLOSEST = 2.4  # the least figure height, in face heights, a face is scaled to (hair, face, a little chest)
FACE_SPACING = 2.6  # face widths between neighbouring faces at the least
TOP_MARGIN = 0.04  # of the frame's height, kept free above the tallest head

# The seed's say in a layout.
JITTER_X = 0.05  # of the space each character has
JITTER_SCALE = 0.05
JITTER_DROP = 0.03  # of the frame's height: how far below the bottom edge a figure may stand

REMEMBERED_CUTOUTS = 32  # cut-out references kept by a backend, oldest forgotten first
WORKING_SIDE = 1024  # references are reduced to this longer side before cutting
GRABCUT_SIDE = 256  # GrabCut runs at this longer side (its cost grows fast with it); its mask is brought back up
GRABCUT_ITERATIONS = 3
TORSO = 1.0  # face widths each side of the face's centre where a figure is filled from side to side
GRABCUT_RNG_SEED = 0x5EED  # GrabCut seeds its colour models by k-means from OpenCV's random generator
SUBJECT_INSET = 0.08  # the rectangle GrabCut starts from, inset from each side of a picture with no face
SUBJECT_AREA = (0.05, 0.92)  # a GrabCut subject outside these fractions of its rectangle is not believed
BUST_AREA = (0.35, 1.6)  # a person outside these fractions of the prior silhouette is not believed

SHADOW = 0.35  # how much a figure darkens the scene behind it
HARMONY = 0.15  # how far a figure's colours move towards the scene's
SCENE_SOFTEN = 0.0025  # a location is softened by this fraction of the frame's width (depth of field)


@dataclass(frozen=True)
class Cutout:
    """A character cut out of a reference: its colours (``uint8``) and opacity (float32, 0..1), how it was cut,
    the face box ``(x, y, width, height)`` within it where it was cut round a face, and which of the character's
    references it came from."""

    rgb: np.ndarray
    alpha: np.ndarray
    cut: str  # "face", "subject" or "whole"
    face: tuple[float, float, float, float] | None
    reference_index: int = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.alpha.shape[1], self.alpha.shape[0]


@dataclass(frozen=True)
class Placement:
    """Where a cutout goes: its scale and the frame position of its top-left corner."""

    scale: float
    x: float
    y: float


class ComposeBackend(PictureBackend):
    """The embedded keyframe backend: reference photographs cut out and laid over the scene, deterministically."""

    name = "compose"
    label = "Compose"
    capabilities = PictureCapabilities(
        max_images=8,
        views=("front", "full-figure"),
        size_multiple=8,
        max_side=4096,
        needs_gpu=False,
        deterministic=True,
    )

    def __init__(self) -> None:
        self._cutouts: OrderedDict[bytes, Cutout] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def check_request(cls, request: PictureRequest) -> None:
        if request.view in VIEWS and request.view not in cls.capabilities.views:
            raise RequestError(
                f"{cls.label} reframes a reference photograph and cannot turn a head, so it cannot draw the "
                f"{request.view} view (it draws {', '.join(cls.capabilities.views)}); "
                "use qwen-image-edit or flux2-klein for it"
            )
        super().check_request(request)
        pictures = len(request.subjects) + (request.scene is not None)
        if pictures > cls.capabilities.max_images:
            raise RequestError(
                f"{cls.label} lays out at most {cls.capabilities.max_images} pictures (characters and scene), "
                f"got {pictures}; split the shot"
            )
        if request.scene is None and not any(subject.pictures for subject in request.subjects):
            raise RequestError(f"{cls.label} draws from pictures: none of the shot's characters has a reference")

    def unload(self) -> None:
        with self._lock:
            self._cutouts.clear()

    def _cutout(self, picture: Image.Image, recognizer: FaceRecognizer | None, *, whole_figure: bool) -> Cutout:
        """:func:`_cut_picture`, remembered by the picture's pixels: the candidates of a shot (one per seed) and
        the shots a character is in cut the same references out again, and a cut costs up to a second."""
        rgb = np.asarray(to_rgb(picture))
        key = (
            hashlib.sha1(rgb.tobytes(), usedforsecurity=False).digest()
            + repr((rgb.shape, whole_figure, recognizer is None)).encode()
        )
        with self._lock:
            known = self._cutouts.get(key)
        if known is None:
            known = _cut_picture(picture, recognizer, whole_figure=whole_figure)
            with self._lock:
                self._cutouts[key] = known
                while len(self._cutouts) > REMEMBERED_CUTOUTS:
                    self._cutouts.popitem(last=False)
        return known

    def _draw(self, request: PictureRequest, progress: ProgressFn, cancel: CancelToken) -> PictureResult:
        start = time.perf_counter()
        width, height = request.width, request.height
        recognizer, face_note = _recognizer()
        notes = [
            "Compose reframes the reference photographs: it places them as they are; it cannot turn a head "
            "or show what they do not."
        ]
        if face_note:
            notes.append(face_note)
        drawn = [subject for subject in request.subjects if subject.pictures]
        notes += [
            f"{s.name} has no reference picture and is not in the picture" for s in request.subjects if not s.pictures
        ]
        if request.view is not None:
            frame = _sheet_backdrop(width, height)
        elif request.scene is not None:
            frame = _scene_backdrop(request.scene, width, height, soften="keyframe" not in request.scene_kind)
        else:
            frame = _plain_backdrop(width, height, request.seed)
        timings = {"backdrop": time.perf_counter() - start}
        placements: list[dict[str, Any]] = []
        cutting = laying = 0.0
        total = max(1, len(drawn))
        for index, subject in enumerate(drawn):
            if cancel.cancelled:
                raise GenerationCancelled(f"cancelled after {index} of {len(drawn)} characters")
            rng = np.random.default_rng([_seed(request.seed), index])
            began = time.perf_counter()
            chosen = _chosen_reference(subject.pictures, rng, recognizer)
            cutout = self._cutout(subject.pictures[chosen], recognizer, whole_figure=request.view == "full-figure")
            cutout = replace(cutout, reference_index=chosen)
            cutting += time.perf_counter() - began
            began = time.perf_counter()
            if request.view is not None:
                where = _centred(cutout, width, height, VIEW_HEIGHT[request.view], stand=request.view == "front")
            else:
                where = _placed(cutout, index, len(drawn), width, height, rng)
            box = _lay(frame, cutout, where, shadow=request.view is None)
            laying += time.perf_counter() - began
            placements.append(_record(subject.name, cutout, where, box))
            if cutout.face is None:
                how = "its subject cut out" if cutout.cut == "subject" else "the whole picture laid in"
                notes.append(f"{subject.name}: no face found in its references; {how}")
            progress(STAGE, index + 1, total)
        if not drawn:
            progress(STAGE, 1, 1)
        timings |= {"cut": cutting, "lay": laying, "total": time.perf_counter() - start}
        image = Image.fromarray(np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8))
        parameters = request.parameters() | {
            "backend": self.name,
            "placements": placements,
            "provenance": {"libraries": _libraries(recognizer)},
        }
        return PictureResult(image=image, parameters=parameters, timings=timings, notes=tuple(notes))


# -- the scene -------------------------------------------------------------------------------------------------


def _scene_backdrop(scene: Image.Image, width: int, height: int, *, soften: bool) -> np.ndarray:
    """The scene cover-fitted to the frame (scaled to cover it, centred, the overflow cropped). A location is
    softened a touch, as a lens focused on the characters would; a keyframe is kept sharp, so a chain of shots
    does not blur further at every link."""
    picture = to_rgb(scene)
    cover = max(width / picture.width, height / picture.height)
    size = (max(width, round(picture.width * cover)), max(height, round(picture.height * cover)))
    picture = picture.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    frame = np.asarray(picture.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0
    if soften:
        frame = cv2.GaussianBlur(frame, (0, 0), SCENE_SOFTEN * width)
    return np.ascontiguousarray(frame)


def _plain_backdrop(width: int, height: int, seed: int) -> np.ndarray:
    """A soft vertical gradient -- a lighter wall over a darker floor, with a faint vignette -- whose tone comes
    from the seed: an empty set for a storyboard frame."""
    rng = np.random.default_rng([_seed(seed), 0xBAC])
    hue = float(rng.uniform(0.0, 1.0))
    saturation = float(rng.uniform(0.08, 0.22))
    top = np.array(colorsys.hsv_to_rgb(hue, saturation, float(rng.uniform(0.72, 0.86))), dtype=np.float32)
    bottom = np.array(colorsys.hsv_to_rgb(hue, saturation * 1.2, float(rng.uniform(0.32, 0.45))), dtype=np.float32)
    return _gradient(width, height, top, bottom)


def _sheet_backdrop(width: int, height: int) -> np.ndarray:
    """The plain light grey of a character sheet, the same for every view and seed."""
    return _gradient(width, height, np.array([0.86] * 3, np.float32), np.array([0.7] * 3, np.float32))


def _gradient(width: int, height: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None] ** 1.4
    frame = top * (1.0 - ramp) + bottom * ramp
    ys, xs = np.ogrid[-1.0 : 1.0 : height * 1j, -1.0 : 1.0 : width * 1j]
    vignette = 1.0 - 0.18 * np.clip(xs.astype(np.float32) ** 2 * 0.6 + ys.astype(np.float32) ** 2 * 0.4, 0, 1)
    return np.ascontiguousarray(np.broadcast_to(frame, (height, width, 3)) * vignette[:, :, None], dtype=np.float32)


# -- cutting a character out -----------------------------------------------------------------------------------


def _recognizer() -> tuple[FaceRecognizer | None, str]:
    try:
        return load_face_recognizer(), ""
    except FaceRecognizerMissing as exc:
        logger.warning("compose cuts characters without faces: %s", exc)
        return None, f"No face detector here ({exc}): characters are cut out as whole subjects."


def _chosen_reference(
    pictures: tuple[Image.Image, ...], rng: np.random.Generator, recognizer: FaceRecognizer | None
) -> int:
    """The reference a character is cut out of: the one the seed picks, or where that one shows no face and another
    does, the next one with a face (a character is a person if any of their references shows one)."""
    first = int(rng.integers(len(pictures)))
    for step in range(len(pictures)):
        index = (first + step) % len(pictures)
        if recognizer is not None and recognizer.reference_faces(to_rgb(pictures[index])):
            return index
    return first


def _cut_picture(picture: Image.Image, recognizer: FaceRecognizer | None, *, whole_figure: bool) -> Cutout:
    """A character cut out of one reference: around its face, else its subject, else the whole picture."""
    working = _working(picture)
    rgb = np.asarray(working)
    face = _face_box(working, picture, recognizer)
    if face is not None:
        return _face_cut(rgb, face, whole_figure=whole_figure)
    return _subject_cut(rgb) or _whole_cut(rgb)


def _working(picture: Image.Image) -> Image.Image:
    rgb = to_rgb(picture)
    scale = WORKING_SIDE / max(rgb.size)
    if scale >= 1.0:
        return rgb
    return rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.LANCZOS)


def _face_box(
    working: Image.Image, picture: Image.Image, recognizer: FaceRecognizer | None
) -> tuple[float, float, float, float] | None:
    """The surest face in a reference (the one identity scores it by), in the ``working`` copy's pixels."""
    if recognizer is None:
        return None
    rgb = to_rgb(picture)
    faces = recognizer.reference_faces(rgb)
    if not faces:
        return None
    scale = working.width / rgb.width
    x, y, w, h = faces[0].box
    return x * scale, y * scale, w * scale, h * scale


def _face_cut(rgb: np.ndarray, face: tuple[float, float, float, float], *, whole_figure: bool = False) -> Cutout:
    """A head-and-shoulders cut around ``face``: the person separated from the photograph's background. With
    ``whole_figure``, as much of the person as the photograph shows below the face, faded at every edge (it is
    shown whole, not standing on the frame's edge)."""
    height, width = rgb.shape[:2]
    fx, fy, fw, fh = face
    side = FIGURE_SIDE if whole_figure else CUT_SIDE
    left = max(0, int(fx - side * fw))
    right = min(width, int(np.ceil(fx + fw + side * fw)))
    top = max(0, int(fy - CUT_ABOVE * fh))
    bottom = height if whole_figure else min(height, int(np.ceil(fy + fh + CUT_BELOW * fh)))
    crop = rgb[top:bottom, left:right]
    local = (fx - left, fy - top, fw, fh)
    mask = _grabcut(crop, local)
    alpha = _soften(mask, sigma=0.05 * fw)
    # Where the cut ends inside a figure (the photograph's sides and top), the figure fades instead of ending in a
    # straight edge; the bottom is left whole, as it stands on the frame's bottom edge.
    alpha *= _edge_fade(alpha.shape, 0.3 * fw, bottom=whole_figure)
    return Cutout(crop, alpha, "subject" if whole_figure else "face", local)


def _bust_prior(
    shape: tuple[int, int], face: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a person facing the camera can be around a face box, where they likely are, and where surely.

    - ``outline``: a generous egg of a head (wide at the hair, narrow at the jaw) over shoulders widening from the
      neck down; nothing outside it is the person, however like the person it looks (a door frame or a curtain
      of skin or hair colour beside the head);
    - ``likely``: the shoulders and chest;
    - ``sure``: the head itself (dlib's box stops at the eyebrows; the crown is above it), the neck and the middle
      of the chest. Dark hair against a dark background is where GrabCut goes wrong most, so the head is not
      left to it.
    """
    height, width = shape
    fx, fy, fw, fh = face
    cx = fx + fw / 2
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    across = np.where(ys < fy + 0.5 * fh, 0.7 * fw, 0.62 * fw)
    egg = ((xs - cx) / across) ** 2 + ((ys - (fy + 0.35 * fh)) / (1.02 * fh)) ** 2 <= 1.0
    below = ys - (fy + 0.9 * fh)
    outline = egg | ((below > 0) & (np.abs(xs - cx) <= 0.55 * fw + 2.0 * below))
    likely = (below > 0.05 * fh) & (np.abs(xs - cx) <= np.minimum(0.45 * fw + 1.4 * below, 1.75 * fw))
    head = ((xs - cx) / (0.46 * fw)) ** 2 + ((ys - (fy + 0.36 * fh)) / (0.7 * fh)) ** 2 <= 1.0
    neck = (np.abs(xs - cx) <= 0.25 * fw) & (ys > fy + 0.9 * fh) & (ys <= fy + 1.3 * fh)
    chest = (np.abs(xs - cx) <= 0.5 * fw) & (ys > fy + 1.6 * fh)
    return outline, likely, head | neck | chest


def _grabcut(crop: np.ndarray, face: tuple[float, float, float, float]) -> np.ndarray:
    """The person around ``face`` as a 0/1 float mask: GrabCut seeded from :func:`_bust_prior`, kept inside its
    outline; the likely silhouette itself where GrabCut cannot run or its answer is not believable."""
    fx, fy, fw, fh = face
    outline, likely, sure = _bust_prior(crop.shape[:2], face)
    silhouette = likely | sure
    seed = np.full(outline.shape, cv2.GC_PR_BGD, np.uint8)
    # Surely the photograph's background: well beyond the outline, where no hair reaches (hair marked background
    # would teach GrabCut that hair is background).
    ys, xs = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]].astype(np.float32)
    far = ((xs - fx - fw / 2) / (1.05 * fw)) ** 2 + ((ys - fy - 0.3 * fh) / (1.25 * fh)) ** 2 > 1.0
    seed[far & ~outline] = cv2.GC_BGD
    seed[likely] = cv2.GC_PR_FGD
    seed[sure] = cv2.GC_FGD
    found = _run_grabcut(crop, seed)
    if found is None:
        return silhouette.astype(np.float32)
    found = _keep_part_holding(found & outline, (int(fx + fw / 2), int(fy + fh / 2))) & outline
    # Below the chin the middle of a figure has no gaps from side to side (a dark collar, a helmet ring, a shadow
    # under the jaw are the person): each row is filled between its outermost parts of the person there.
    torso = np.abs(np.arange(crop.shape[1], dtype=np.float32) - fx - fw / 2)[None, :] <= TORSO * fw
    found |= _row_spans(found) & (likely | sure) & torso
    area = float(found.sum()) / max(1.0, float(silhouette.sum()))
    if not BUST_AREA[0] <= area <= BUST_AREA[1]:
        logger.debug("GrabCut found %.2f of the likely silhouette; the silhouette is used", area)
        return silhouette.astype(np.float32)
    return found.astype(np.float32)


def _subject_cut(rgb: np.ndarray) -> Cutout | None:
    """The subject of a picture with no face, by GrabCut from a central rectangle; None where it finds nothing
    believable."""
    height, width = rgb.shape[:2]
    x, y = round(SUBJECT_INSET * width), round(SUBJECT_INSET * height)
    w, h = width - 2 * x, height - 2 * y
    if w < 8 or h < 8:
        return None
    seed = np.full((height, width), cv2.GC_BGD, np.uint8)
    seed[y : y + h, x : x + w] = cv2.GC_PR_FGD
    found = _run_grabcut(rgb, seed)
    if found is None:
        return None
    found = _keep_largest(found)
    area = float(found.sum()) / float(w * h)
    if not SUBJECT_AREA[0] <= area <= SUBJECT_AREA[1]:
        logger.debug("GrabCut found %.2f of the picture's centre: the whole picture is used", area)
        return None
    ys, xs = np.nonzero(found)
    pad = round(0.03 * max(width, height))
    top, bottom = max(0, ys.min() - pad), min(height, ys.max() + 1 + pad)
    left, right = max(0, xs.min() - pad), min(width, xs.max() + 1 + pad)
    mask = found[top:bottom, left:right].astype(np.float32)
    alpha = _soften(mask, sigma=0.006 * max(width, height) + 0.6)
    return Cutout(rgb[top:bottom, left:right], alpha, "subject", None)


def _whole_cut(rgb: np.ndarray) -> Cutout:
    """The whole picture, its edges feathered into the scene (a vignette with rounded corners)."""
    height, width = rgb.shape[:2]
    feather = 0.08 * min(width, height)
    alpha = _edge_fade((height, width), feather, bottom=True)
    return Cutout(rgb, alpha, "whole", None)


def _run_grabcut(rgb: np.ndarray, seed: np.ndarray) -> np.ndarray | None:
    """GrabCut at a bounded size from a seed mask; the foreground as a bool mask at the picture's size, None where
    GrabCut cannot run (a seed with no foreground or no background)."""
    height, width = seed.shape
    scale = min(1.0, GRABCUT_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    small_seed = cv2.resize(seed, size, interpolation=cv2.INTER_NEAREST) if scale < 1 else seed.copy()
    fore = np.isin(small_seed, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if fore.all() or not fore.any():
        return None
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_RNG_SEED)  # the colour models start from k-means: the same start, the same cut
    try:
        cv2.grabCut(
            np.ascontiguousarray(small[:, :, ::-1]),
            small_seed,
            None,
            background,
            foreground,
            GRABCUT_ITERATIONS,
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error as exc:
        logger.debug("GrabCut failed: %s", exc)
        return None
    found = np.isin(small_seed, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        found = cv2.resize(found * 255, (width, height), interpolation=cv2.INTER_LINEAR) >= 128
    return found.astype(bool)


def _row_spans(mask: np.ndarray) -> np.ndarray:
    """Each row of ``mask`` filled from its first to its last set pixel."""
    columns = np.arange(mask.shape[1])[None, :]
    set_ = mask.any(axis=1)[:, None]
    first = np.where(set_, mask.argmax(axis=1)[:, None], mask.shape[1])
    last = np.where(set_, mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)[:, None], -1)
    return (columns >= first) & (columns <= last)


def _keep_part_holding(mask: np.ndarray, point: tuple[int, int]) -> np.ndarray:
    """The connected part of ``mask`` that holds ``point`` (the largest where it holds none), holes filled."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    x = min(max(point[0], 0), mask.shape[1] - 1)
    y = min(max(point[1], 0), mask.shape[0] - 1)
    label = labels[y, x]
    if label == 0:
        return _keep_largest(mask)
    return _fill_holes(labels == label)


def _keep_largest(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return _fill_holes(labels == largest)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the background it encloses filled: a dark tie or a white collar is part of the person."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    return mask | (flood[1:-1, 1:-1] == 0)


def _soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A 0/1 mask with soft edges: smoothed, then the edge pulled in a little so no rim of the old background
    shows around the figure."""
    blurred = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.5, sigma))
    return np.clip((blurred - 0.25) / 0.65, 0.0, 1.0).astype(np.float32)


def _edge_fade(shape: tuple[int, int], width: float, *, bottom: bool) -> np.ndarray:
    """1 inside, falling smoothly to 0 over ``width`` pixels at the sides and top (and bottom, if asked), with
    rounded corners."""
    height, wide = shape
    width = max(1.0, width)
    xs = np.arange(wide, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    dx = np.minimum(xs + 0.5, wide - 0.5 - xs)[None, :]
    dy = (np.minimum(ys + 0.5, height - 0.5 - ys) if bottom else ys + 0.5)[:, None]
    # Distance inside a rounded rectangle: near a corner both sides count.
    ux, uy = np.clip(1.0 - dx / width, 0, 1), np.clip(1.0 - dy / width, 0, 1)
    inside = np.clip(1.0 - np.sqrt(ux**2 + uy**2), 0, 1)
    return (inside * inside * (3 - 2 * inside)).astype(np.float32)


# -- laying the characters out ---------------------------------------------------------------------------------


def _placed(cutout: Cutout, index: int, count: int, width: int, height: int, rng: np.random.Generator) -> Placement:
    """Where character ``index`` of ``count`` stands: in its share of the frame from the left, on the bottom edge,
    as tall as the count allows, moved and scaled a little by the seed, never out of the frame."""
    stature = HEIGHT_BY_COUNT.get(count, HEIGHT_MANY) * height
    share = width / count
    jitter_x, jitter_scale, drop = rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(0.0, 1.0)
    stature *= 1.0 + JITTER_SCALE * jitter_scale
    cut_w, cut_h = cutout.size
    if cutout.face is not None:
        fx, fy, fw, fh = cutout.face
        head = max(0.0, fy - HAIR * fh)  # the top of the hair, in the cut
        # The figure (hair to the cut's bottom) is as tall as the count allows; a tight crop of a face is not
        # blown up past a close-up, and neighbours' faces never meet.
        scale = min(stature / max(1.0, cut_h - head), stature / (CLOSEST * fh), share / (FACE_SPACING * fw))
        centre = fx + fw / 2
    else:
        scale = min(stature / cut_h, 0.95 * share / cut_w, (1.0 - TOP_MARGIN) * height / cut_h)
        head, centre = 0.0, cut_w / 2
    x = share * (index + 0.5) + JITTER_X * share * jitter_x - centre * scale
    y = height - cut_h * scale + JITTER_DROP * height * drop
    y = max(y, TOP_MARGIN * height - head * scale)
    left, right = _visible_span(cutout.alpha)
    x = min(max(x, -left * scale), width - right * scale)  # what shows of the figure stays in the frame
    return Placement(scale, x, y)


def _centred(cutout: Cutout, width: int, height: int, stature: float, *, stand: bool) -> Placement:
    """A character-sheet view: centred, ``stature`` of the frame's height, standing on the bottom edge (front) or
    centred in the frame (full figure)."""
    cut_w, cut_h = cutout.size
    centre = cut_w / 2 if cutout.face is None else cutout.face[0] + cutout.face[2] / 2
    if stand and cutout.face is not None:
        _, fy, _, fh = cutout.face
        head = max(0.0, fy - HAIR * fh)
        scale = min(stature * height / max(1.0, cut_h - head), stature * height / (CLOSEST * fh))
    else:
        scale = min(stature * height / cut_h, 0.9 * width / cut_w)
    x = width / 2 - centre * scale
    y = height - cut_h * scale if stand else (height - cut_h * scale) / 2
    return Placement(scale, x, y)


def _visible_span(alpha: np.ndarray) -> tuple[int, int]:
    columns = np.nonzero(alpha.max(axis=0) > 0.05)[0]
    if not len(columns):
        return 0, alpha.shape[1]
    return int(columns[0]), int(columns[-1]) + 1


def _lay(frame: np.ndarray, cutout: Cutout, where: Placement, *, shadow: bool) -> tuple[int, int, int, int]:
    """Composite ``cutout`` into ``frame`` (in place) at ``where``: a soft shadow behind it, its colours drawn a
    little towards the scene's, then the figure over its soft edge. Returns the frame box it covers."""
    height, width = frame.shape[:2]
    cut_w, cut_h = cutout.size
    size = (max(1, round(cut_w * where.scale)), max(1, round(cut_h * where.scale)))
    resample = cv2.INTER_AREA if where.scale < 1 else cv2.INTER_CUBIC
    rgb = np.clip(cv2.resize(cutout.rgb.astype(np.float32) / 255.0, size, interpolation=resample), 0.0, 1.0)
    alpha = np.clip(cv2.resize(cutout.alpha, size, interpolation=resample), 0.0, 1.0)
    x0, y0 = round(where.x), round(where.y)
    # The part of the cutout inside the frame.
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = min(size[0], width - x0), min(size[1], height - y0)
    if right <= left or bottom <= top:
        return 0, 0, 0, 0
    rgb, alpha = rgb[top:bottom, left:right], alpha[top:bottom, left:right]
    fx0, fy0 = x0 + left, y0 + top
    region = frame[fy0 : fy0 + alpha.shape[0], fx0 : fx0 + alpha.shape[1]]
    weight = alpha[:, :, None]
    if float(alpha.sum()) > 0:
        figure = (rgb * weight).sum(axis=(0, 1)) / float(alpha.sum())
        scene = region.reshape(-1, 3).mean(axis=0)
        rgb = np.clip(rgb + HARMONY * (scene - figure), 0.0, 1.0)
    if shadow:
        _cast_shadow(frame, alpha, fx0, fy0)
        region = frame[fy0 : fy0 + alpha.shape[0], fx0 : fx0 + alpha.shape[1]]
    region[:] = region * (1.0 - weight) + rgb * weight
    rows, columns = np.nonzero(alpha > 0.05)
    if not len(rows):
        return fx0, fy0, 0, 0
    return (
        fx0 + int(columns.min()),
        fy0 + int(rows.min()),
        int(columns.max() - columns.min()) + 1,
        int(rows.max() - rows.min()) + 1,
    )


def _cast_shadow(frame: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Darken the scene behind a figure with its blurred silhouette, a little down and to the right, so it
    stands in the scene rather than on it."""
    height, width = frame.shape[:2]
    spread = max(2.0, 0.035 * alpha.shape[0])
    shift = round(spread * 0.6)
    pad = round(3 * spread) + shift
    canvas = np.zeros((alpha.shape[0] + 2 * pad, alpha.shape[1] + 2 * pad), np.float32)
    canvas[pad + shift : pad + shift + alpha.shape[0], pad + shift : pad + shift + alpha.shape[1]] = alpha
    canvas = cv2.GaussianBlur(canvas, (0, 0), spread) * SHADOW
    left, top = x - pad, y - pad
    cl, ct = max(0, -left), max(0, -top)
    cr, cb = min(canvas.shape[1], width - left), min(canvas.shape[0], height - top)
    if cr <= cl or cb <= ct:
        return
    frame[top + ct : top + cb, left + cl : left + cr] *= 1.0 - canvas[ct:cb, cl:cr, None]


# -- the record ------------------------------------------------------------------------------------------------


def _record(name: str, cutout: Cutout, where: Placement, box: tuple[int, int, int, int]) -> dict[str, Any]:
    placed: dict[str, Any] = {
        "name": name,
        "box": list(box),
        "reference_index": cutout.reference_index,
        "cut": cutout.cut,
        "scale": round(where.scale, 4),
    }
    if cutout.face is not None:
        fx, fy, fw, fh = cutout.face
        placed["face"] = [
            round(where.x + fx * where.scale),
            round(where.y + fy * where.scale),
            round(fw * where.scale),
            round(fh * where.scale),
        ]
    return placed


def _libraries(recognizer: FaceRecognizer | None) -> dict[str, str | None]:
    libraries: dict[str, str | None] = {
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "pillow": Image.__version__,
        "face_recognizer": None if recognizer is None else recognizer.id,
        "dlib": None,
    }
    for package in ("dlib-bin", "dlib"):
        try:
            libraries["dlib"] = metadata.version(package)
            break
        except metadata.PackageNotFoundError:
            continue
    return libraries


def _seed(seed: int) -> int:
    return int(seed) % (1 << 63)
