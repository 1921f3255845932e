"""What every video backend takes and gives back, and how it reports progress and hears a cancel.

A backend turns a :class:`GenerationRequest` into a :class:`GenerationResult`. It declares its
:class:`Capabilities` so that validation and the UI ask instead of guessing, and it checks a request against
them in :meth:`Backend.check_request` before any model is loaded: a request it cannot honour is a
:class:`RequestError` that says what to change.

Nothing here imports torch: the animatic backend and the studio's validation run without it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from pipelines.camera import CameraError, parse_camera

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, step, total)``: called after each denoising step (or frame, for the animatic)."""


class BackendError(Exception):
    """A backend could not run: missing weights, a corrupt file, no GPU where one is required."""


class RequestError(BackendError, ValueError):
    """A request this backend cannot honour; the message says what to change."""


class GenerationCancelled(BackendError):
    """The render was cancelled; raised at the next denoising step after the cancel request."""


class CancelToken:
    """Set from any thread (the UI, a queue worker); read by the backend between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. ``frame_stride``: frame counts must be ``frame_stride * k + 1``."""

    image_to_video: bool
    text_only: bool
    reference_images: int  # how many character references it conditions on (0: none)
    last_frame: bool
    camera_control: str  # "path": follows the camera path; "prompt": described in words; "2d": moved in 2D
    refiner: bool
    max_frames: int  # in one pass
    frame_stride: int = 1
    size_multiple: int = 8
    max_side: int = 4096
    needs_gpu: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RefinerSettings:
    """Stage 2. ``strength`` is for video-to-video refiners (Wan); SANA-WM's refiner is a fixed 3-step schedule."""

    enabled: bool = False
    steps: int | None = None
    strength: float = 0.3


def frames_for(duration: float, fps: int) -> int:
    """The frames of a shot lasting ``duration`` seconds at ``fps``: ``round(duration * fps)``, at least 2 (a first
    frame and a move). The one rule: the queue, the backends and the export's placeholders all count so."""
    return max(2, round(duration * fps))


def snap_frames(frames: int, stride: int) -> int:
    """The nearest ``stride*k+1`` at or above ``frames`` (never fewer frames than asked for): what a backend whose
    frame counts go in strides renders for ``frames``, in one pass or in windows."""
    return (frames - 1 + stride - 1) // stride * stride + 1


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    width: int
    height: int
    fps: int
    num_frames: int
    seed: int = 0
    keyframe: Image.Image | None = None
    last_frame: Image.Image | None = None
    references: tuple[Image.Image, ...] = ()
    negative_prompt: str = ""
    camera: str = "static"
    steps: int | None = None
    guidance: float | None = None
    refiner: RefinerSettings = field(default_factory=RefinerSettings)
    caption: str = ""

    @classmethod
    def for_duration(cls, duration: float, fps: int, **fields: Any) -> GenerationRequest:
        """A request lasting ``duration`` seconds (:func:`frames_for`)."""
        return cls(fps=fps, num_frames=frames_for(duration, fps), **fields)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def with_frames(self, num_frames: int) -> GenerationRequest:
        return replace(self, num_frames=num_frames)

    def parameters(self) -> dict[str, Any]:
        """Every generation parameter as plain JSON values (images are described, not embedded)."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "seed": self.seed,
            "camera": self.camera,
            "steps": self.steps,
            "guidance": self.guidance,
            "refiner": asdict(self.refiner),
            "caption": self.caption,
            "keyframe": _describe(self.keyframe),
            "last_frame": _describe(self.last_frame),
            "references": [_describe(image) for image in self.references],
        }


@dataclass(frozen=True)
class GenerationResult:
    """Frames as ``uint8`` ``(T, H, W, 3)``; ``parameters`` are those actually used (after snapping)."""

    frames: np.ndarray
    fps: int
    parameters: dict[str, Any]
    timings: dict[str, float]
    peak_memory: dict[str, int]
    latents: Any = None  # stage-1 latents (a torch tensor) where the backend has them
    notes: tuple[str, ...] = ()  # what was adjusted and why, for the user

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str


class Backend(ABC):
    """A video generator. Subclasses set the class attributes and implement :meth:`_generate`."""

    name: ClassVar[str]
    label: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def availability(self) -> Availability:
        return Availability(True, "ready")

    @classmethod
    def check_request(cls, request: GenerationRequest) -> tuple[GenerationRequest, tuple[str, ...]]:
        """Validate against the capabilities; return the request as it will run, and notes on what changed.

        :meth:`check_inputs` (the pictures it starts from) and :meth:`check_shape` (everything else). A class
        method: the queue checks shots before any backend exists.
        """
        cls.check_inputs(request)
        return cls.check_shape(request)

    @classmethod
    def check_inputs(cls, request: GenerationRequest) -> None:
        """The pictures a request starts from, against what the backend takes."""
        caps = cls.capabilities
        if request.keyframe is None and not caps.text_only:
            raise RequestError(f"{cls.label} starts from a keyframe image; give the shot a keyframe")
        if request.last_frame is not None and not caps.last_frame:
            raise RequestError(f"{cls.label} cannot end on a given last frame; remove it or use wan-i2v")
        if len(request.references) > caps.reference_images:
            if caps.reference_images == 0:
                raise RequestError(f"{cls.label} takes no character reference images; use wan-vace for them")
            raise RequestError(
                f"{cls.label} takes at most {caps.reference_images} reference images, got {len(request.references)}"
            )

    @classmethod
    def check_shape(cls, request: GenerationRequest) -> tuple[GenerationRequest, tuple[str, ...]]:
        """Everything but the pictures: size, rate, frames, camera, steps, refiner. Known before any picture is.

        Frame counts are snapped to the backend's stride (and the change is noted); everything else that does
        not fit is a :class:`RequestError`.
        """
        caps = cls.capabilities
        notes: list[str] = []
        if not request.prompt.strip():
            raise RequestError("the prompt is empty; describe the shot")
        for side, value in (("width", request.width), ("height", request.height)):
            if value % caps.size_multiple or not caps.size_multiple <= value <= caps.max_side:
                raise RequestError(
                    f"{cls.name} needs a {side} that is a multiple of {caps.size_multiple} up to {caps.max_side}, "
                    f"got {value}"
                )
        if not 1 <= request.fps <= 120:
            raise RequestError(f"fps must be between 1 and 120, got {request.fps}")
        if request.refiner.enabled and not caps.refiner:
            raise RequestError(f"{cls.label} has no refiner; turn the refiner off")
        if request.steps is not None and not 1 <= request.steps <= 500:
            raise RequestError(f"steps must be between 1 and 500, got {request.steps}")
        if request.num_frames < 2:
            raise RequestError(f"a shot needs at least 2 frames, got {request.num_frames}")
        frames = request.num_frames
        try:
            path = parse_camera(request.camera)
            path.check_fits(frames)
        except CameraError as exc:
            raise RequestError(str(exc)) from None
        if path.preset is None:
            if (frames - 1) % caps.frame_stride:
                raise RequestError(
                    f"the camera path {path.text!r} is {path.frame_count} steps; {cls.label} renders "
                    f"{caps.frame_stride}*k+1 frames, so make it a multiple of {caps.frame_stride} steps "
                    f"(for example {_near(frames - 1, caps.frame_stride)})"
                )
        elif (frames - 1) % caps.frame_stride:
            snapped = snap_frames(frames, caps.frame_stride)
            notes.append(f"{frames} frames snapped to {snapped} ({cls.label} renders {caps.frame_stride}*k+1 frames)")
            frames = snapped
        if frames > caps.max_frames:
            raise RequestError(
                f"{frames} frames is more than {cls.label} renders in one pass ({caps.max_frames}); "
                "render the shot in windows"
            )
        return request.with_frames(frames), tuple(notes)

    def generate(
        self,
        request: GenerationRequest,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        checked, notes = self.check_request(request)
        self.preflight(checked)
        result = self._generate(checked, progress or _no_progress, cancel or CancelToken())
        if notes:
            result = replace(result, notes=notes + result.notes)
        return result

    def preflight(self, request: GenerationRequest) -> None:
        """Checks that need this instance (its weights, its refiner), made before any model loads."""
        del request

    @abstractmethod
    def _generate(self, request: GenerationRequest, progress: ProgressFn, cancel: CancelToken) -> GenerationResult:
        """Render a request that :meth:`check_request` accepted."""

    def unload(self) -> None:  # noqa: B027 - most backends hold nothing; those that do override it
        """Free whatever the backend holds in memory (weights, caches)."""


def _no_progress(stage: str, step: int, total: int) -> None:
    del stage, step, total


def _near(steps: int, stride: int) -> str:
    low = steps // stride * stride
    return f"{low} or {low + stride}" if low else str(stride)


def _describe(image: Image.Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    described: dict[str, Any] = {"width": image.width, "height": image.height}
    sha256 = image.info.get("sha256")
    if sha256:
        described["sha256"] = sha256
    return described
