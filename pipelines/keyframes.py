"""What every keyframe backend takes and gives back: a picture drawn from the cast, not a video.

A keyframe backend draws one still picture (a shot's first or last frame, or a view of a character for its
sheet) from a :class:`PictureRequest`: the prompt, the characters in the picture with their reference pictures,
and the scene it is set in (a location picture, or the previous shot's keyframe). It declares its
:class:`PictureCapabilities` and checks a request against them in :meth:`PictureBackend.check_request` before any
model loads, exactly as the video backends do (:mod:`pipelines.backend`); progress, cancel and the errors are
theirs.

The edit models take their input pictures as one ordered list and are told in the prompt which is which;
:meth:`PictureRequest.input_pictures` and :meth:`PictureRequest.model_prompt` are that one rule, so every
backend orders and names the pictures alike and the record of a candidate says what the model was given.

Nothing here imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from PIL import Image

from pipelines.backend import (
    Availability,
    CancelToken,
    ProgressFn,
    RequestError,
)

VIEWS = ("front", "three-quarter", "profile", "full-figure")
"""The views of a character sheet, in the order a sheet shows them."""

VIEW_PROMPTS = {
    "front": "a head-and-shoulders portrait of the same person, facing the camera, neutral expression, plain "
    "light grey background, even studio light",
    "three-quarter": "the same person turned three-quarters to the left, head and shoulders, plain light grey "
    "background, even studio light",
    "profile": "the same person in left profile, head and shoulders, plain light grey background, even studio light",
    "full-figure": "the same person standing, full figure from head to feet, facing the camera, plain light grey "
    "background, even studio light",
}


@dataclass(frozen=True)
class Subject:
    """A character in a picture: its name, its description in words, and its reference pictures (first is best)."""

    name: str
    description: str
    pictures: tuple[Image.Image, ...]


@dataclass(frozen=True)
class PictureCapabilities:
    """What a keyframe backend can do. ``max_images``: how many input pictures the model conditions on in all
    (characters' references and the scene together)."""

    max_images: int
    views: tuple[str, ...]  # the character-sheet views it can draw
    size_multiple: int = 16
    max_side: int = 2048
    needs_gpu: bool = False
    deterministic: bool = False  # the same seed gives the same picture on any machine

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PictureRequest:
    """One picture to draw. ``scene`` is the location or the previous keyframe (None: an empty set);
    ``view`` is set for a character-sheet view (one subject, no scene)."""

    prompt: str
    width: int
    height: int
    seed: int = 0
    subjects: tuple[Subject, ...] = ()
    scene: Image.Image | None = None
    scene_kind: str = ""  # "location", "previous keyframe", "next keyframe", or "" without a scene
    view: str | None = None
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None

    def input_pictures(self, limit: int) -> list[tuple[str, Image.Image]]:
        """The pictures given to a model that takes ``limit`` of them, with what each is, in order: each
        character's first reference, then the scene; with room to spare, more references per character."""
        chosen: list[tuple[str, Image.Image]] = []
        for subject in self.subjects:
            if subject.pictures and len(chosen) < limit:
                chosen.append((subject.name, subject.pictures[0]))
        if self.scene is not None and len(chosen) < limit:
            chosen.append((self.scene_kind or "scene", self.scene))
        extra = 1
        while len(chosen) < limit:
            added = False
            for subject in self.subjects:
                if extra < len(subject.pictures) and len(chosen) < limit:
                    chosen.insert(_after(chosen, subject.name), (subject.name, subject.pictures[extra]))
                    added = True
            if not added:
                break
            extra += 1
        return chosen

    def subject_names(self) -> set[str]:
        return {subject.name for subject in self.subjects}

    def model_prompt(self, limit: int, word: str = "Picture") -> str:
        """The prompt an edit model is given: which input picture shows whom (by description), then the shot's
        own words. So a storyboard that says "Mara climbs the stairs" tells the model who Mara is."""
        described = {subject.name: subject.description for subject in self.subjects}
        lines = []
        for index, (what, _picture) in enumerate(self.input_pictures(limit), start=1):
            if what in described:
                who = f"{what}, {described[what]}" if described[what] else what
                lines.append(f"{word} {index} shows {who}.")
            else:
                lines.append(f"{word} {index} is the {what}: keep its place and light.")
        if self.view is not None:
            lines.append(VIEW_PROMPTS[self.view].capitalize() + ".")
        lines.append(self.prompt.strip())
        return " ".join(lines)

    def parameters(self) -> dict[str, Any]:
        """Every drawing parameter as plain JSON values (pictures are described by size and hash, not embedded)."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "steps": self.steps,
            "guidance": self.guidance,
            "view": self.view,
            "scene_kind": self.scene_kind,
            "subjects": [
                {"name": s.name, "description": s.description, "pictures": [_describe(p) for p in s.pictures]}
                for s in self.subjects
            ],
            "scene": _describe(self.scene),
        }


@dataclass(frozen=True)
class PictureResult:
    """The picture drawn (RGB, at the request's size); ``parameters`` are those actually used."""

    image: Image.Image
    parameters: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class PictureBackend(ABC):
    """A keyframe generator. Subclasses set the class attributes and implement :meth:`_draw`."""

    kind: ClassVar[str] = "keyframe"
    name: ClassVar[str]
    label: ClassVar[str]
    capabilities: ClassVar[PictureCapabilities]

    def availability(self) -> Availability:
        return Availability(True, "ready")

    @classmethod
    def check_request(cls, request: PictureRequest) -> None:
        """A request this backend cannot draw is a :class:`RequestError` saying what to change."""
        caps = cls.capabilities
        if not request.prompt.strip():
            raise RequestError("the prompt is empty; describe the picture")
        for side, value in (("width", request.width), ("height", request.height)):
            if value % caps.size_multiple or not caps.size_multiple <= value <= caps.max_side:
                raise RequestError(
                    f"{cls.name} needs a {side} that is a multiple of {caps.size_multiple} up to {caps.max_side}, "
                    f"got {value}"
                )
        if request.steps is not None and not 1 <= request.steps <= 500:
            raise RequestError(f"steps must be between 1 and 500, got {request.steps}")
        if request.view is not None:
            if request.view not in VIEWS:
                raise RequestError(f"a character sheet's views are {', '.join(VIEWS)}; got {request.view!r}")
            if request.view not in caps.views:
                raise RequestError(
                    f"{cls.label} cannot draw the {request.view} view (it draws {', '.join(caps.views)}); "
                    "use qwen-image-edit or flux2-klein for it"
                )
            if len(request.subjects) != 1 or not request.subjects[0].pictures:
                raise RequestError("a character-sheet view is drawn from one character's reference pictures")
        if not request.subjects and request.scene is None:
            raise RequestError(f"{cls.label} draws from pictures: give the shot characters with references or a scene")

    def draw(
        self, request: PictureRequest, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None
    ) -> PictureResult:
        self.check_request(request)
        self.preflight(request)
        return self._draw(request, progress or _no_progress, cancel or CancelToken())

    def preflight(self, request: PictureRequest) -> None:
        """Checks that need this instance (its weights), made before any model loads."""
        del request

    @abstractmethod
    def _draw(self, request: PictureRequest, progress: ProgressFn, cancel: CancelToken) -> PictureResult:
        """Draw a request that :meth:`check_request` accepted."""

    def unload(self) -> None:  # noqa: B027 - most backends hold nothing; those that do override it
        """Free whatever the backend holds in memory."""


def _after(chosen: list[tuple[str, Image.Image]], name: str) -> int:
    """Where another picture of ``name`` goes: after the last one of it already chosen."""
    last = max(index for index, (what, _) in enumerate(chosen) if what == name)
    return last + 1


def _no_progress(stage: str, step: int, total: int) -> None:
    del stage, step, total


def _describe(image: Image.Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    described: dict[str, Any] = {"width": image.width, "height": image.height}
    sha256 = image.info.get("sha256")
    if sha256:
        described["sha256"] = sha256
    return described
