"""Who is in a picture: dlib's face detector, 5-point alignment and ResNet face recognizer.

Identity in the studio means the person, not the picture. A colour and texture descriptor cannot tell two people
in one photograph apart (it scored same-person pairs from other photos no higher than other people in the same
photo); a face recognizer trained to tell people apart can. This one is dlib's: its ResNet maps an aligned face
to 128 numbers, and two faces of one person lie closer than 0.6 (Euclidean) -- 99.38% right on the LFW benchmark.
Its weights ship in the ``face-recognition-models`` package on PyPI (Davis King's models, public domain / CC0) and
dlib itself in the ``dlib-bin`` wheels, so nothing is downloaded at run time.

- Faces are found by dlib's HOG detector (far better than OpenCV's Haar cascades on real photographs) on the frame
  brought to a working size, bounded on both sides whatever the picture's shape
  (:func:`pipelines.pictures.canvas_scale`); where it finds none, once more with the detector's own upsampling,
  which finds faces half the size.
- Each face is aligned on its 5 landmarks (eyes' corners, nose) before the recognizer sees it, so a turned head or
  a mirrored shot is compared as a face, not as pixels.
- :func:`same_person` turns a distance into the calibrated score in 0..1 (0.5 at dlib's own threshold) and
  :func:`verdict` into words: same person, unsure, different person.

Nothing loads at import: the models load on first use, once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.embedders import EmbedderError
from pipelines.pictures import canvas_scale, canvas_size, to_rgb

FACE_RECOGNIZER_ID = "dlib-resnet-v1"
MODELS_PACKAGE = "face-recognition-models"

# dlib's own same-person threshold on the Euclidean distance of two descriptors.
SAME_PERSON_DISTANCE = 0.6
# How quickly the score falls from sure to unsure around the threshold: a distance 0.05 below it scores 0.73,
# 0.05 above it 0.27; same-person pairs of real photographs lie at 0.3-0.5 (0.9-1.0), other people at 0.7-0.9.
DISTANCE_SCALE = 0.05
SURE_MARGIN = 0.05

SAME, UNSURE, DIFFERENT, NO_FACE = "same person", "unsure", "different person", "no face visible"

DETECT_SHORT_SIDE = 480  # frames are brought to this shorter side (at most 1280 on the longer) before detection
FALLBACK_SHORT_SIDE = 360  # where none is found there: upsampled by the detector, at this reduced size
DETECT_LONG_SIDE = 1280
HOG_WINDOW = 80  # the detector's window: a canvas narrower than this holds no face it can find
REMEMBERED_REFERENCES = 256  # reference pictures whose faces are kept, oldest forgotten first
MIN_DETECTION_SCORE = 0.0  # the HOG detector's own margin; below it, patterns that only resemble a face


class FaceRecognizerMissing(EmbedderError):
    """dlib or its face models are not installed."""


@dataclass(frozen=True)
class Face:
    """A face found in a picture: its box ``(x, y, width, height)`` in the picture's pixels, the detector's
    confidence, and the 128-d descriptor of the aligned face."""

    box: tuple[int, int, int, int]
    confidence: float
    descriptor: np.ndarray


def same_person(distance: float) -> float:
    """The calibrated score of a descriptor distance: 0.5 at dlib's threshold, towards 1 for the same person."""
    return 1.0 / (1.0 + math.exp((distance - SAME_PERSON_DISTANCE) / DISTANCE_SCALE))


SURE_SCORE = same_person(SAME_PERSON_DISTANCE - SURE_MARGIN)  # about 0.73
DOUBT_SCORE = same_person(SAME_PERSON_DISTANCE + SURE_MARGIN)  # about 0.27


def verdict(score: float | None) -> str:
    """A score in words: same person, unsure, different person (or no face visible where there is no score)."""
    if score is None:
        return NO_FACE
    if score >= SURE_SCORE:
        return SAME
    if score <= DOUBT_SCORE:
        return DIFFERENT
    return UNSURE


def models_folder() -> Path:
    """The folder of dlib's model files inside the installed ``face_recognition_models`` package.

    The package is located, not imported: its ``__init__`` needs ``pkg_resources``, which current setuptools no
    longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceRecognizerMissing(
            f"the face models are not installed: pip install {MODELS_PACKAGE} (see requirements.txt)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceRecognizer:
    """dlib's HOG face detector, 5-point shape predictor and ResNet recognizer, loaded together.

    dlib's Python objects are not documented as safe to share between threads, so calls take a lock; the
    detector and recognizer are C++ and fast enough that one face costs about 0.1 s on one core.
    """

    id = FACE_RECOGNIZER_ID

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise FaceRecognizerMissing("dlib is not installed: pip install dlib-bin (see requirements.txt)") from exc
        folder = models_folder()
        landmarks = folder / "shape_predictor_5_face_landmarks.dat"
        recognizer = folder / "dlib_face_recognition_resnet_model_v1.dat"
        for path in (landmarks, recognizer):
            if not path.is_file():
                raise FaceRecognizerMissing(f"{path} is missing: reinstall {MODELS_PACKAGE}")
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(landmarks))
        self._recognizer = dlib.face_recognition_model_v1(str(recognizer))
        self._lock = threading.Lock()
        self._references: dict[bytes, list[Face]] = {}

    def faces(self, image: Image.Image | np.ndarray, *, limit: int = 4) -> list[Face]:
        """The faces in ``image`` (surest first, at most ``limit``) with their descriptors; empty when none."""
        rgb = _rgb(image)
        working, scale = _working_size(rgb, DETECT_SHORT_SIDE)
        with self._lock:
            found = self._detect(working, upsample=0)
            if not found:
                # Smaller faces: the detector's upsampling halves the smallest face it finds and costs four times
                # the search, so it looks at a reduced copy (still finding faces 2/3 the size, at twice the cost).
                working, scale = _working_size(rgb, FALLBACK_SHORT_SIDE)
                found = self._detect(working, upsample=1)
            found = sorted(found, key=lambda item: -item[1])[:limit]
            faces = []
            for rect, confidence in found:
                shape = self._landmarks(working, rect)
                descriptor = np.asarray(self._recognizer.compute_face_descriptor(working, shape), dtype=np.float32)
                box = (
                    round(rect.left() / scale),
                    round(rect.top() / scale),
                    max(1, round(rect.width() / scale)),
                    max(1, round(rect.height() / scale)),
                )
                faces.append(Face(box=box, confidence=float(confidence), descriptor=descriptor))
        return faces

    def reference_faces(self, image: Image.Image | np.ndarray) -> list[Face]:
        """:meth:`faces` of a reference picture, remembered by its pixels: a character's references are compared
        with every take of every shot they are in, and finding their faces again would cost each take ~0.25 s."""
        rgb = _rgb(image)
        key = hashlib.sha1(rgb.tobytes(), usedforsecurity=False).digest() + repr(rgb.shape).encode()
        with self._lock:
            known = self._references.get(key)
        if known is None:
            known = self.faces(rgb)
            with self._lock:
                if len(self._references) >= REMEMBERED_REFERENCES:
                    self._references.pop(next(iter(self._references)))
                self._references[key] = known
        return known

    def _detect(self, rgb: np.ndarray, *, upsample: int) -> list[tuple[Any, float]]:
        if min(rgb.shape[:2]) << upsample < HOG_WINDOW:
            return []  # a strip of a picture: nothing face-sized fits in it
        rects, scores, _ = self._detector.run(rgb, upsample, MIN_DETECTION_SCORE)
        return list(zip(rects, scores, strict=True))

    def __repr__(self) -> str:
        return f"FaceRecognizer({self.id})"


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def nearest(faces: Sequence[Face], references: Sequence[np.ndarray]) -> float | None:
    """The smallest distance between any face and any reference descriptor (None when either is empty)."""
    if not faces or not len(references):
        return None
    found = np.stack([face.descriptor for face in faces])
    known = np.stack(list(references))
    return float(np.linalg.norm(found[:, None, :] - known[None, :, :], axis=2).min())


_RECOGNIZER: FaceRecognizer | None = None
_RECOGNIZER_LOCK = threading.Lock()


def load_face_recognizer() -> FaceRecognizer:
    """The process's face recognizer, loaded on first use (about a second) and then shared."""
    global _RECOGNIZER
    with _RECOGNIZER_LOCK:
        if _RECOGNIZER is None:
            _RECOGNIZER = FaceRecognizer()
        return _RECOGNIZER


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(to_rgb(image))  # 16- and 32-bit pictures scaled, not clipped to white
    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] < 3:
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def _working_size(rgb: np.ndarray, short_side: int) -> tuple[np.ndarray, float]:
    """The image at a detection size and the scale it was brought by: small frames are enlarged (the HOG window
    is 80 px) and very large ones reduced (search time grows with the area); neither side passes the long-side
    bound, so a 12000x4 strip costs no more than a frame."""
    height, width = rgb.shape[:2]
    scale = canvas_scale(height, width, short_side, DETECT_LONG_SIDE * short_side // DETECT_SHORT_SIDE)
    if abs(scale - 1.0) < 0.05:
        return rgb, 1.0
    size = canvas_size(height, width, scale)
    resample = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(rgb).resize(size, resample)), scale
