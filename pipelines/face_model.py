"""An ArcFace-style face-recognition model (ONNX) for identity scores: ArcFace face similarity.

The research community reports three identity numbers for generated video: CLIP-I, DINO-I (see
:mod:`pipelines.embedders`) and ArcFace face similarity, the cosine of two faces' embeddings under a face
recognizer trained to tell people apart. :class:`FaceModel` runs such a recognizer with onnxruntime: the common
insightface releases (``w600k_r50.onnx`` from ``buffalo_l``, ``glintr100.onnx`` from ``antelopev2``, and the other
ArcFace exports laid out like them) take one or a batch of 112x112 RGB faces as ``float32`` ``(N, 3, 112, 112)``
scaled to ``(x - 127.5) / 127.5`` and return one 512-d embedding per face.

A face model is optional: it is named by ``$CONTINUITY_FACE_MODEL`` (a path to an ``.onnx`` file) or passed
explicitly, and :func:`load_face_model` returns ``None`` when none is configured. It is never downloaded. The
identity score then compares the faces it finds with this model, and everything else with the general embedder
(see :func:`pipelines.consistency.identity`). Nothing here loads at import time: onnxruntime is imported when a
model is built.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipelines.embedders import EmbedderError, normalise_rows
from pipelines.pictures import to_rgb

log = logging.getLogger(__name__)

FACE_MODEL_ENV = "CONTINUITY_FACE_MODEL"
FACE_SIDE = 112  # the side of the square face every ArcFace release takes


class FaceModelError(EmbedderError):
    """A face model that cannot be loaded or run; the message says what to change."""


class FaceModelNotFound(FaceModelError):
    """The configured face-model file does not exist."""


class NotAFaceModel(FaceModelError):
    """The file is not a loadable ONNX model, or not one shaped like a face recognizer."""


class FaceModel:
    """An ArcFace-style ONNX face recognizer as an embedder of face crops (L2-normalised rows).

    ``path`` is the ``.onnx`` file. Its input must be one ``float`` tensor ``(N, 3, 112, 112)`` (``N`` dynamic or
    1) and its first output ``(N, D)`` (``D`` is 512 for every insightface release); anything else is refused
    with :class:`NotAFaceModel` when the model is built, as is a file onnxruntime cannot load. One zero face is
    run at load, so a model that loads but cannot run is refused then too.

    Faces are prepared as insightface's ``ArcFaceONNX`` prepares them: RGB (``bgr=True`` for a model trained on
    BGR), ``(x - mean) / std`` with 127.5 and 127.5 (pass ``mean=0.0, std=1.0`` for the old MXNet exports that
    normalise inside the graph). *Alignment is simple*: each crop is resized to 112x112 as it comes. insightface
    first warps every face so that its five landmarks (eyes, nose tip, mouth corners) land on fixed points of the
    112x112 template, which is what the models were trained on and gives noticeably better similarities; that is
    not done here (the Haar detector finds no landmarks). To come nearer the template, face crops for this model
    are cut with a smaller margin (:attr:`crop_pad`) than crops for the general embedder.

    ``id`` is ``"arcface:{file name}:{first 10 hex digits of the file's SHA-256}"``, hashed once on first use; a
    retrained or different file under the same name scores apart. Runs on CUDA when onnxruntime has the CUDA
    provider, else on the CPU; sessions are thread-safe, so one model serves every thread.
    """

    crop_pad = 0.1  # margin around a Haar face box (fraction of its size) that comes nearest ArcFace's template

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        bgr: bool = False,
        mean: float = 127.5,
        std: float = 127.5,
        providers: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> None:
        file = Path(path).expanduser()
        if not file.exists():
            raise FaceModelNotFound(
                f"face model {file} does not exist; set ${FACE_MODEL_ENV} to an ArcFace .onnx file "
                "(for example insightface's w600k_r50.onnx) or unset it"
            )
        if not file.is_file():
            raise NotAFaceModel(f"face model {file} is not a file; it must be an ArcFace .onnx file")
        if std == 0:
            raise ValueError("std must not be 0")
        self.path = file.resolve()
        self.bgr = bool(bgr)
        self.mean, self.std = float(mean), float(std)
        self.batch_size = max(1, int(batch_size))
        self._id: str | None = None
        self._id_lock = threading.Lock()
        self._load(providers)

    def _load(self, providers: Sequence[str] | None) -> None:
        try:
            import onnxruntime as ort
            from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
        except ImportError:
            raise FaceModelError(
                f"a face model is configured ({self.path.name}) but onnxruntime is not installed; "
                "pip install onnxruntime (or onnxruntime-gpu)"
            ) from None
        # onnxruntime raises its own exception classes (Fail, InvalidProtobuf, InvalidArgument, ...), all
        # defined in its binding module and derived straight from Exception.
        ort_errors = tuple(
            value for value in vars(ort_state).values() if isinstance(value, type) and issubclass(value, Exception)
        )
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime warns about every unused initializer
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=list(providers))
        except (*ort_errors, RuntimeError, ValueError, OSError) as exc:
            raise NotAFaceModel(
                f"{self.path.name} is not a loadable ONNX model ({_first_line(exc)}); a face model must be an "
                "ArcFace .onnx file such as insightface's w600k_r50.onnx"
            ) from None
        self._check_shapes()
        try:
            probe = self._run(np.zeros((1, 3, FACE_SIDE, FACE_SIDE), dtype=np.float32))
        except (*ort_errors, RuntimeError, ValueError) as exc:
            raise NotAFaceModel(
                f"{self.path.name} loads but does not run on a 112x112 face: {_first_line(exc)}"
            ) from None
        if probe.ndim != 2 or probe.shape[0] != 1 or probe.shape[1] < 2:
            raise NotAFaceModel(
                f"{self.path.name} returned {probe.shape} for one face; a face recognizer returns (1, D), "
                "one embedding (D = 512 for ArcFace)"
            )
        self.width = int(probe.shape[1])
        self.providers = list(self.session.get_providers())
        log.info("loaded face model %s on %s", self.path.name, self.providers[0])

    def _check_shapes(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        expected = "an ArcFace face recognizer takes one float input (N, 3, 112, 112) and returns (N, 512) embeddings"
        if len(inputs) != 1:
            raise NotAFaceModel(f"{self.path.name} has {len(inputs)} inputs; {expected}")
        shape = list(inputs[0].shape)
        fixed = [dim if isinstance(dim, int) else None for dim in shape]  # symbolic or unknown dims are None
        if (
            len(shape) != 4
            or fixed[1] != 3
            or any(side not in (None, FACE_SIDE) for side in fixed[2:])
            or fixed[0] not in (None, 1)
        ):
            raise NotAFaceModel(f"{self.path.name} takes input of shape {_shown(shape)}; {expected}")
        if inputs[0].type != "tensor(float)":
            raise NotAFaceModel(f"{self.path.name} takes {inputs[0].type}, not tensor(float); {expected}")
        out_shape = list(outputs[0].shape) if outputs else []
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] < 2):
            raise NotAFaceModel(f"{self.path.name} returns shape {_shown(out_shape)}; {expected}")
        self._input = inputs[0].name
        self._output = outputs[0].name
        self._one_at_a_time = fixed[0] == 1

    @property
    def id(self) -> str:
        """``arcface:{file name}:{short SHA-256 of the file}``; the file is hashed once, on first use."""
        with self._id_lock:
            if self._id is None:
                digest = hashlib.sha256()
                with self.path.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                self._id = f"arcface:{self.path.name}:{digest.hexdigest()[:10]}"
            return self._id

    def embed(self, face_crops: Sequence[Image.Image]) -> np.ndarray:
        """One L2-normalised ``float32`` row per face crop (``(len(face_crops), width)``).

        Each crop is converted to RGB and resized to 112x112 (no landmark alignment, see the class docstring).
        """
        if not face_crops:
            return np.zeros((0, self.width), dtype=np.float32)
        blob = np.stack([self._prepare(crop) for crop in face_crops])
        step = 1 if self._one_at_a_time else self.batch_size
        rows = [self._run(blob[start : start + step]) for start in range(0, len(blob), step)]
        return normalise_rows(np.concatenate(rows))

    def _prepare(self, crop: Image.Image | np.ndarray) -> np.ndarray:
        rgb = np.asarray(to_rgb(crop)) if isinstance(crop, Image.Image) else _rgb(crop)
        height, width = rgb.shape[:2]
        shrinking = height > FACE_SIDE or width > FACE_SIDE
        face = cv2.resize(rgb, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        if self.bgr:
            face = face[:, :, ::-1]
        return ((face.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)

    def _run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self._output], {self._input: blob})[0], dtype=np.float32)

    def __repr__(self) -> str:
        return f"FaceModel({str(self.path)!r})"


def _rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(f"a face crop array must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def _shown(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(dim) if isinstance(dim, int) else "N" for dim in shape) + ")"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# Loading from the environment, with a cache.

_FACE_MODELS: dict[tuple[str, int, int], FaceModel] = {}
_FACE_MODELS_LOCK = threading.Lock()


def face_model_path() -> str | None:
    """``$CONTINUITY_FACE_MODEL`` when it is set and not blank, else ``None``."""
    value = os.environ.get(FACE_MODEL_ENV, "").strip()
    return value or None


def load_face_model(path: str | os.PathLike[str] | None = None) -> FaceModel | None:
    """The face model at ``path``, else the one ``$CONTINUITY_FACE_MODEL`` names, else ``None`` (none configured).

    Loaded once per file and then shared; a file that changed since (size or modification time) loads again,
    so its new id is seen. A file that fails to load raises :class:`FaceModelError` every time and is not cached.
    """
    chosen = path if path is not None and str(path).strip() else face_model_path()
    if chosen is None:
        return None
    file = Path(chosen).expanduser()
    try:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return FaceModel(file)  # raises the clear error for a missing or unreadable file
    with _FACE_MODELS_LOCK:
        model = _FACE_MODELS.get(key)
        if model is None:
            for stale in [k for k in _FACE_MODELS if k[0] == key[0]]:
                del _FACE_MODELS[stale]
            model = FaceModel(file)
            _FACE_MODELS[key] = model
        return model


def unload_face_models() -> int:
    """Forget every loaded face model; returns how many."""
    with _FACE_MODELS_LOCK:
        count = len(_FACE_MODELS)
        _FACE_MODELS.clear()
    return count
