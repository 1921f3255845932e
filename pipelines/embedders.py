"""Image embedders for consistency scores, and the face and subject crops the scores compare.

An embedder turns images into L2-normalised rows, so that a dot product is a cosine similarity. Every embedder
has a stable :attr:`Embedder.id` that is recorded with every score it produced: cosines from different
embedders live on different scales (a random pair of photographs is at about 0.35 under the offline embedder,
and somewhere else under each model), so scores are only ever compared between takes scored by the same id.

- :class:`OfflineEmbedder` needs no weights: colour, texture and a coarse layout, computed with numpy and
  OpenCV in about a millisecond a crop. It is the default everywhere, and good at what a video model most
  often gets wrong between clips (a costume changing colour, a face changing texture); it knows nothing of
  semantics.
- :class:`TransformersEmbedder` runs a CLIP, DINOv2 or SigLIP image model from a local folder or the Hugging
  Face cache (never downloaded; safetensors only). These give the research metrics their usual meaning:
  CLIP-I and DINO-I identity similarity, VBench's subject (DINO) and background (CLIP) consistency.

:func:`load_embedder` keeps loaded embedders per name, so a model loads once for any number of scores.

Faces are found with OpenCV's Haar frontal-face cascade (shipped in the OpenCV wheel), checked by a second
cascade: on small frames a Haar cascade alone finds "faces" in coins and craters. Nothing here loads at import
time; torch and transformers are imported by the transformers embedder when it is built.

One job, a little over 500 lines: the two embedders and the crops they embed are changed together, because a
score is only comparable between crops made the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import cv2
import numpy as np
from PIL import Image

from pipelines.model_folder import PICKLE_SUFFIXES, ModelError, resolve_source
from pipelines.pictures import canvas_scale, canvas_size, to_rgb

log = logging.getLogger(__name__)

ImageLike = Image.Image | np.ndarray
Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the image given


class EmbedderError(ModelError):
    """An embedder that cannot be loaded or run; the message says what to change."""


class EmbedderNotFound(EmbedderError):
    """The embedder's model folder does not exist, or the hub id is not in the local Hugging Face cache."""


class UnsupportedEmbedder(EmbedderError):
    """The folder holds a model that is not one of the image families the studio embeds with."""


class PickledWeightsRefused(EmbedderError):
    """The folder holds only pickled weights (``pytorch_model.bin``), which can run code when opened."""


class FaceDetectorMissing(EmbedderError):
    """OpenCV's face cascades are not where the OpenCV wheel puts them."""


@runtime_checkable
class Embedder(Protocol):
    """Turns images into L2-normalised ``float32`` rows, one per image.

    ``id`` names the embedder and its version; it is stored with every score, and scores with different ids are
    never compared. Implementations must be safe to share between threads once built (they are read-only).
    """

    id: str

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def normalise_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as ``float32``."""
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


# The offline embedder.


def _uniform_lbp_table() -> np.ndarray:
    """Maps the 256 8-neighbour LBP codes to 59 bins: the 58 "uniform" patterns (at most two 0/1 transitions
    around the circle: edges, corners, spots, flat) get a bin each, every other code shares the last one."""
    table = np.full(256, 58, dtype=np.int64)
    next_bin = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        if transitions <= 2:
            table[code] = next_bin
            next_bin += 1
    return table


_LBP_BINS = _uniform_lbp_table()
_LBP_COUNT = 59
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


class OfflineEmbedder:
    """Colour, texture and layout descriptors of a crop, weighted and concatenated; needs no weights.

    The crop is resized to 128x128 (so every crop costs the same: about a millisecond on one core) and
    described by four blocks, each L2-normalised and scaled by the square root of its weight, so that the
    cosine of two embeddings is exactly the weighted mean of the four blocks' cosines:

    - colour (weight 0.40): a joint hue x saturation histogram (12 x 4) of the coloured pixels plus an 8-bin
      value histogram of the grey ones, in square roots (the Hellinger trick: the cosine of square-rooted
      histograms is their Bhattacharyya coefficient, so one dominant colour does not drown the rest).
      Colour carries the most weight because it is what drifts most visibly between clips (hair, skin,
      costume) and it survives camera moves and small crops unchanged.
    - texture (weight 0.20): the 59-bin uniform local-binary-pattern histogram of the grey image: skin, fur,
      fabric and metal differ here, and LBP ignores brightness changes by construction.
    - shape (weight 0.25): magnitude-weighted gradient-orientation histograms (9 unsigned bins) on a 2x2 grid,
      a coarse HOG: contours and their rough positions.
    - layout (weight 0.15): the crop at 8x8 in grey, mean and contrast removed: where the light and dark masses
      sit. Least weight, because a camera move changes it even when the subject stays the same.

    Texture and shape histograms are square-rooted and centred (their mean bin removed): raw, every photograph
    is mostly flat and edge patterns, and unrelated photographs scored 0.87 (texture) and 0.95 (shape) against
    each other on average; centred, 0.70 and 0.35, while a cropped, resized, brightened copy still scores 0.95.
    Over whole rows, on seven scikit-image photographs: a photograph against a slightly cropped, resized and
    brightened copy of itself 0.87-0.99, unrelated photographs 0.15-0.67 (0.36 on average).

    Deterministic (no randomness, no threads): the same image always gives the same row.
    """

    id = "offline-colour-texture-v1"
    SIZE = 128
    WEIGHTS: ClassVar[dict[str, float]] = {"colour": 0.40, "texture": 0.20, "shape": 0.25, "layout": 0.15}
    HUE_BINS, SAT_BINS, GREY_BINS = 12, 4, 8
    ORIENTATION_BINS, GRID = 9, 2
    LAYOUT_SIZE = 8
    COLOURED = 40  # saturation (0..255) from which a pixel counts as coloured rather than grey

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.width), dtype=np.float32)
        return np.stack([self._describe(_rgb_array(image)) for image in images]).astype(np.float32)

    @property
    def width(self) -> int:
        """The length of a row: colour 56, texture 59, shape 36, layout 64."""
        colour = self.HUE_BINS * self.SAT_BINS + self.GREY_BINS
        return colour + _LBP_COUNT + self.ORIENTATION_BINS * self.GRID**2 + self.LAYOUT_SIZE**2

    def _describe(self, rgb: np.ndarray) -> np.ndarray:
        while min(rgb.shape[:2]) >= 2 * self.SIZE:  # halve first (blurred): a straight resize would alias
            rgb = cv2.pyrDown(rgb)
        rgb = cv2.resize(rgb, (self.SIZE, self.SIZE), interpolation=cv2.INTER_LINEAR)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        blocks = {
            "colour": self._colour(rgb),
            "texture": self._texture(grey),
            "shape": self._shape(grey),
            "layout": self._layout(grey),
        }
        parts = [np.sqrt(self.WEIGHTS[name]) * _unit(block) for name, block in blocks.items()]
        return np.concatenate(parts).astype(np.float32)

    def _colour(self, rgb: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int32)  # H 0..179, S and V 0..255
        coloured = hsv[:, 1] >= self.COLOURED
        hue = hsv[coloured, 0] * self.HUE_BINS // 180
        sat = (hsv[coloured, 1] - self.COLOURED) * self.SAT_BINS // (256 - self.COLOURED)
        joint = np.bincount(hue * self.SAT_BINS + sat, minlength=self.HUE_BINS * self.SAT_BINS)
        grey = np.bincount(hsv[~coloured, 2] * self.GREY_BINS // 256, minlength=self.GREY_BINS)
        counts = np.concatenate([joint, grey]).astype(np.float64)
        return np.sqrt(counts / max(counts.sum(), 1.0))

    def _texture(self, grey: np.ndarray) -> np.ndarray:
        # Smoothed first, so that JPEG noise and sensor grain do not masquerade as texture.
        grey = cv2.GaussianBlur(grey, (3, 3), 0).astype(np.int16)
        centre = grey[1:-1, 1:-1]
        height, width = centre.shape
        code = np.zeros(centre.shape, dtype=np.int64)
        for bit, (dy, dx) in enumerate(_NEIGHBOURS):
            neighbour = grey[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            code |= (neighbour >= centre).astype(np.int64) << bit
        counts = np.bincount(_LBP_BINS[code].ravel(), minlength=_LBP_COUNT).astype(np.float64)
        return _centred(np.sqrt(counts / max(counts.sum(), 1.0)))

    def _shape(self, grey: np.ndarray) -> np.ndarray:
        as_float = grey.astype(np.float32)
        gx = cv2.Sobel(as_float, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(as_float, cv2.CV_32F, 0, 1, ksize=3)
        magnitude, angle = cv2.cartToPolar(gx, gy)
        bins = (angle * (self.ORIENTATION_BINS / np.pi)).astype(np.int32) % self.ORIENTATION_BINS  # unsigned
        cell = self.SIZE // self.GRID
        rows = np.arange(self.SIZE) // cell
        cells = rows[:, None] * self.GRID + rows[None, :]
        counts = np.bincount(
            (cells * self.ORIENTATION_BINS + bins).ravel(),
            weights=magnitude.ravel(),
            minlength=self.GRID**2 * self.ORIENTATION_BINS,
        )
        return _centred(np.sqrt(counts / max(counts.sum(), 1e-9)))

    def _layout(self, grey: np.ndarray) -> np.ndarray:
        small = cv2.resize(grey, (self.LAYOUT_SIZE, self.LAYOUT_SIZE), interpolation=cv2.INTER_AREA)
        small = small.astype(np.float64).ravel()
        return small - small.mean()


def _centred(histogram: np.ndarray) -> np.ndarray:
    """A square-rooted histogram less its mean bin, so that the cosine of two is their correlation: the part of a
    texture or gradient histogram that every photograph shares (mostly flat and edge patterns) drops out."""
    return histogram - histogram.mean()


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-12 else vector


def _rgb_array(image: ImageLike) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise ValueError(f"an image array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image[:, :, :3])
    return np.asarray(to_rgb(image))  # 16- and 32-bit pictures scaled, not clipped to white


def _pil(image: ImageLike) -> Image.Image:
    return to_rgb(image) if isinstance(image, Image.Image) else Image.fromarray(_rgb_array(image))


# The transformers embedder.


@dataclass(frozen=True)
class _Family:
    """How to get one image embedding out of a model family."""

    model_class: str
    output: str  # "image_features": get_image_features(); "image_embeds": the projection; "pooler": pooler_output


FAMILIES: dict[str, tuple[str, str]] = {
    "clip": ("CLIPModel", "image_features"),
    "clip_vision_model": ("CLIPVisionModelWithProjection", "image_embeds"),
    "dinov2": ("Dinov2Model", "pooler"),
    "siglip": ("SiglipModel", "image_features"),
    "siglip_vision_model": ("SiglipVisionModel", "pooler"),
}
"""``model_type`` -> (transformers class, which output is the embedding). CLIP and SigLIP give their image
features (CLIP's after the visual projection; SigLIP's attention-pooled head, which is what SigLIP's
``get_image_features`` returns); DINOv2 its CLS token after the final layer norm (``pooler_output``)."""


def _family(model_type: str, architectures: Sequence[str]) -> _Family:
    model_class, output = FAMILIES[model_type]
    if model_type == "clip_vision_model" and "CLIPVisionModelWithProjection" not in architectures:
        # A vision tower saved without its projection: loading the projection class would invent one at random.
        model_class, output = "CLIPVisionModel", "pooler"
    return _Family(model_class, output)


class TransformersEmbedder:
    """A CLIP, DINOv2 or SigLIP image model from a local folder or the Hugging Face cache, as an embedder.

    ``source`` is a folder (a model saved with ``save_pretrained``, with its ``preprocessor_config.json``) or a
    hub id already in the local cache; nothing is downloaded, and only safetensors weights load. The family is
    read from ``config.json`` (``model_type``), and images are prepared by the folder's own image processor, so
    they are resized and normalised exactly as the model was trained.

    ``id`` is ``"{model_type}:{name}:{hash}"``: the folder's name (or the hub id) and the first 10 hex digits
    of the SHA-256 of ``config.json``, so a differently configured model of the same name scores apart.
    The model runs under ``torch.no_grad`` in ``batch_size`` images at a time, on CUDA when present.
    """

    def __init__(self, source: str, *, device: str | None = None, batch_size: int = 16) -> None:
        folder = _embedder_folder(source)
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise EmbedderError(f"{folder} has no config.json; it is not a transformers model folder")
        raw = config_path.read_bytes()
        try:
            config = json.loads(raw)
            model_type = str(config.get("model_type", ""))
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise EmbedderError(f"{config_path} is damaged ({exc}); download the model again") from None
        if model_type not in FAMILIES:
            raise UnsupportedEmbedder(
                f"{folder.name} has model_type {model_type!r}; an embedder must be a CLIP, DINOv2 or SigLIP image "
                f"model, with model_type one of {', '.join(FAMILIES)}"
            )
        _check_weights(folder)
        self.model_type = model_type
        self.folder = folder
        self.batch_size = max(1, int(batch_size))
        name = folder.name if Path(source).expanduser().is_dir() else source.replace("/", "--")
        self.id = f"{model_type}:{name}:{hashlib.sha256(raw).hexdigest()[:10]}"
        self._family = _family(model_type, config.get("architectures") or ())
        self._lock = threading.Lock()  # one forward at a time: a model shared between threads
        self._load(device)

    def _load(self, device: str | None) -> None:
        import torch
        import transformers
        from transformers import AutoImageProcessor
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        model_class = getattr(transformers, self._family.model_class)
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise EmbedderError(
                f"{self.folder.name} has no usable image processor (preprocessor_config.json): {exc}"
            ) from None
        try:
            model, info = model_class.from_pretrained(
                self.folder,
                dtype=torch.float32,
                use_safetensors=True,
                local_files_only=True,
                output_loading_info=True,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise EmbedderError(f"could not load {self.folder.name} as {model_class.__name__}: {exc}") from None
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            raise EmbedderError(
                f"{self.folder.name} lacks weights {model_class.__name__} needs ({', '.join(missing[:5])}); "
                "the folder holds a different model or an incomplete download"
            )
        self.model = model.eval().to(self.device)
        log.info("loaded embedder %s on %s", self.id, self.device)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        rows = []
        with self._lock, torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = [_pil(image) for image in images[start : start + self.batch_size]]
                inputs = self.processor(images=batch, return_tensors="pt")
                pixel_values = inputs["pixel_values"].to(self.device, torch.float32)
                rows.append(self._forward(pixel_values).float().cpu().numpy())
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return normalise_rows(np.concatenate(rows))

    def _forward(self, pixel_values: Any) -> Any:
        output = self._family.output
        if output == "image_features":
            features = self.model.get_image_features(pixel_values=pixel_values)
            # transformers 5 returns a ModelOutput whose pooler_output holds the features; 4.x a tensor.
            return features if hasattr(features, "ndim") else features.pooler_output
        result = self.model(pixel_values=pixel_values)
        return result.image_embeds if output == "image_embeds" else result.pooler_output


def _embedder_folder(source: str) -> Path:
    try:
        return resolve_source(source)
    except ModelError as exc:
        raise EmbedderNotFound(f"embedder model: {exc}") from None


def _check_weights(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise PickledWeightsRefused(
            f"{folder.name} holds only pickled weights ({', '.join(pickled)}); Continuity loads safetensors only, "
            "because pickled files can run code when opened. Use the model's safetensors release"
        )
    raise EmbedderError(f"{folder} has a config but no weights; the download is incomplete")


# Loading by name, with a cache.

_EMBEDDERS: dict[str, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()
OFFLINE = "offline"


def load_embedder(name: str | None = None) -> Embedder:
    """The embedder called ``name``: ``None`` or ``"offline"`` for :class:`OfflineEmbedder`, otherwise a model
    folder or cached hub id for :class:`TransformersEmbedder`. Loaded once per name and then shared (embedders are
    read-only); a name that fails to load raises every time and is not cached."""
    key = OFFLINE if name is None or name.strip() == OFFLINE else name
    if key != OFFLINE and Path(key).expanduser().is_dir():
        key = str(Path(key).expanduser().resolve())  # one load for every spelling of the same folder
    with _EMBEDDERS_LOCK:  # held while loading, so two threads never load the same model twice
        embedder = _EMBEDDERS.get(key)
        if embedder is None:
            embedder = OfflineEmbedder() if key == OFFLINE else TransformersEmbedder(key)
            _EMBEDDERS[key] = embedder
        return embedder


def unload_embedders() -> int:
    """Forget every loaded embedder (their memory goes back once no score holds them); returns how many."""
    with _EMBEDDERS_LOCK:
        count = len(_EMBEDDERS)
        _EMBEDDERS.clear()
    return count


# Faces and subjects.

_CASCADES = threading.local()  # one classifier per thread: OpenCV does not promise a shared one is thread-safe
DETECT_SIDE = 256  # images with a shorter side are enlarged to this before detection (the cascade window is 24 px)
DETECT_LONG_SIDE = 1024  # ...unless the longer side would pass this: frames up to 4:1 are not affected
CASCADE_WINDOW = 24
MIN_FACE = 0.10  # the smallest face worth scoring, as a fraction of the image's shorter side


def _cascade(name: str) -> cv2.CascadeClassifier:
    loaded: dict[str, cv2.CascadeClassifier] = _CASCADES.__dict__
    cascade = loaded.get(name)
    if cascade is None:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if cascade.empty():
            raise FaceDetectorMissing(f"OpenCV's {name} is missing; reinstall opencv-python-headless")
        loaded[name] = cascade
    return cascade


def detect_faces(image: ImageLike) -> list[Box]:
    """Frontal faces in ``image`` as ``(x, y, width, height)`` boxes, largest first.

    Images are scaled so that their shorter side is 256 px (and their longer at most 1024 px: a 12000x4 strip
    would otherwise become a canvas of gigabytes): a 128x96 frame holds faces of 20 px, below the cascade's
    24 px window, and a 1080p frame would take a second to search. Faces smaller than a tenth of the
    shorter side are ignored, and each face found by the default cascade must be confirmed by the ``alt2``
    cascade around it. On the scikit-image photographs at 96-600 px, the default cascade alone (as commonly
    tuned) found 5-18 false faces in coins, the moon, a clock and the cat; with these settings none, while the
    astronaut's is found at every size.
    Profiles and faces turned away are not found; callers fall back to :func:`subject_crop`.
    """
    grey = cv2.cvtColor(_rgb_array(image), cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    # Every image is brought to the same detection size: small frames are enlarged (the cascade's window is
    # 24 px) and large ones reduced, which keeps detection at a few milliseconds whatever the frame's size or shape.
    scale = canvas_scale(height, width, DETECT_SIDE, DETECT_LONG_SIDE)
    if scale != 1.0:
        interpolation = cv2.INTER_LINEAR if scale > 1.0 else cv2.INTER_AREA
        grey = cv2.resize(grey, canvas_size(height, width, scale), interpolation=interpolation)
    if min(grey.shape) < CASCADE_WINDOW:
        return []  # a strip of a picture: nothing face-sized fits in it
    grey = cv2.equalizeHist(grey)
    smallest = max(24, round(min(grey.shape) * MIN_FACE))
    found = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=8, minSize=(smallest, smallest)
    )
    confirm = _cascade("haarcascade_frontalface_alt2.xml")
    boxes = []
    for x, y, w, h in found:
        margin = w // 4
        x0, y0 = max(0, x - margin), max(0, y - margin)
        around = grey[y0 : y + h + margin, x0 : x + w + margin]
        least = max(24, round(w * 0.6))
        if len(confirm.detectMultiScale(around, scaleFactor=1.1, minNeighbors=2, minSize=(least, least))) == 0:
            continue
        box = (int(x / scale), int(y / scale), max(1, round(w / scale)), max(1, round(h / scale)))
        boxes.append(box)
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[0], b[1]))


def face_crops(image: ImageLike, pad: float = 0.25, *, limit: int = 4) -> list[Image.Image]:
    """The faces of ``image`` (at most ``limit``, largest first), each cut out with ``pad`` times its size added
    on every side (hair, chin and ears identify a character too) and clipped to the image, so square unless the
    face is at an edge. Empty when no face is found."""
    picture = _pil(image)
    crops = []
    for x, y, w, h in detect_faces(picture)[:limit]:
        margin_x, margin_y = round(w * pad), round(h * pad)
        box = (
            max(0, x - margin_x),
            max(0, y - margin_y),
            min(picture.width, x + w + margin_x),
            min(picture.height, y + h + margin_y),
        )
        crops.append(picture.crop(box))
    return crops


def subject_crop(image: ImageLike, fraction: float = 0.6) -> Image.Image:
    """The central ``fraction`` of the image in each direction: where a shot's subject usually stands, and the
    whole-subject fallback when no face is found (without most of the background that a whole frame adds)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    picture = _pil(image)
    w, h = picture.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    return picture.crop((left, top, left + cw, top + ch))
