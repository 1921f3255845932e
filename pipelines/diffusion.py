"""What the diffusers-backed backends share: loading through the cache, progress and cancel through
``callback_on_step_end``, seeded generators, peak memory, and the provenance of the weights used.
"""

from __future__ import annotations

import functools
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import metadata
from typing import Any, ClassVar

import numpy as np

from pipelines.backend import Backend, BackendError, CancelToken, GenerationCancelled, ProgressFn, RequestError
from pipelines.keyframes import PictureBackend, PictureRequest, PictureResult
from pipelines.loading import (
    LoadSpec,
    PipelineCache,
    choose_profile,
    cuda_free_memory,
    host_free_memory,
    is_cuda,
    load_pipeline,
)
from pipelines.memory_plan import GENERIC_GEOMETRY, GENERIC_SIZE, ComponentSize, Geometry, Plan, WorkSize
from pipelines.model_folder import ModelError, ModelFolder, inspect_model_folder, resolve_source

_SHARED_CACHE = PipelineCache(capacity=1)


def shared_cache() -> PipelineCache:
    """The process-wide cache: one loaded model at a time, as one GPU holds."""
    return _SHARED_CACHE


class DiffusionModel:
    """What a backend made of diffusers pipelines loaded from a :class:`LoadSpec` does with its weights: settle
    the spec for this machine, load through the cache, unload, and say which weights made a result. The video
    backends (:class:`DiffusionBackend`) and the keyframe backends (:mod:`pipelines.keyframes`) share it."""

    name: ClassVar[str]
    needs_weights: ClassVar[bool] = True
    required_modules: ClassVar[tuple[str, ...]] = ("torch", "diffusers", "transformers")
    default_source: ClassVar[str | None] = None
    default_steps: ClassVar[int] = 30
    default_guidance: ClassVar[float] = 5.0
    # How its work grows with the size (for memory plans), the size ``auto`` plans for, and which of its
    # refiner's components it loads (None: all that have weights).
    memory_geometry: ClassVar[Geometry] = GENERIC_GEOMETRY
    plan_size: ClassVar[WorkSize] = GENERIC_SIZE
    refiner_loads: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, spec: LoadSpec, *, cache: PipelineCache | None = None) -> None:
        self.spec = spec
        self.cache = cache if cache is not None else shared_cache()
        self.settled: LoadSpec | None = None
        self.profile_reason = ""
        self.model: ModelFolder | None = None
        self.plan: Plan | None = None

    def settle(self, spec: LoadSpec | None = None) -> LoadSpec:
        """Resolve the source and the ``auto`` fields for this machine (cheap; loads nothing). On a GPU the
        memory plan counts the refiner too where its weights are here, as both stay loaded during a take."""
        spec = spec or self.spec
        folder = resolve_source(spec.source, spec.revision)
        model = inspect_model_folder(folder)
        free_vram = cuda_free_memory(spec.device) if spec.device != "cpu" else None
        ours = spec is self.spec
        if ours:
            self.model = model
        profile = choose_profile(
            spec,
            model,
            free_vram=free_vram,
            free_ram=host_free_memory() if free_vram is not None else None,
            geometry=self.memory_geometry,
            size=self.plan_size,
            refiner=tuple(self.refiner_sizes()) if ours and free_vram is not None else (),
        )
        if ours:
            self.settled, self.profile_reason, self.plan = profile.spec, profile.reason, profile.plan
        return profile.spec

    def refiner_sizes(self) -> list[ComponentSize]:
        """The components of the refiner that would be loaded beside this model, where its weights are here."""
        return []

    def settled_refiner(self, source: str, revision: str | None, names: tuple[str, ...]) -> LoadSpec:
        """The refiner's load spec: the backbone's settled device, dtype and offload, pointed at the refiner's
        weights, quantized as the memory plan says (on the CPU, as the backbone's components of the same names)."""
        settled = self.settled or self.settle()
        if self.plan is not None:
            quantization = tuple(sorted(self.plan.quantization("refiner").items()))
        else:
            quantization = tuple((name, scheme) for name, scheme in settled.quantization if name in names)
        return replace(settled, source=source, revision=revision, quantization=quantization, vae_tiling=False)

    def load(self, kind: str, pipeline_class: type, spec: LoadSpec, **components: Any) -> Loaded:
        """The pipeline for ``spec``, from the cache when the same spec was loaded before."""
        settled = self._settled_for(spec)
        return self.cache.get(kind, settled, lambda: Loaded(load_pipeline(pipeline_class, settled, **components)))

    def _settled_for(self, spec: LoadSpec) -> LoadSpec:
        if spec is self.spec:
            return self.settled or self.settle()  # settling our own spec also records the model for provenance
        return spec if spec.settled else self.settle(spec)

    def unload(self) -> None:
        self.cache.unload()

    def refiner_provenance(self, spec: LoadSpec) -> dict[str, Any]:
        """The refiner's weights and the spec it was loaded with on this machine, for the record of a refined take
        (settled as the backbone's is: the spec asked for may say ``auto``)."""
        settled = self._settled_for(spec)
        folder = inspect_model_folder(resolve_source(spec.source, spec.revision))
        return {
            "load_spec": settled.to_json(),
            "model_folder": str(folder.path),
            "model_revision": folder.revision(),
            "model_files": folder.file_fingerprints(),
        }

    def provenance(self) -> dict[str, Any]:
        """The weights and software a take was made with, for its record."""
        spec = self.settled or self.spec
        return {
            "load_spec": spec.to_json(),
            "profile_reason": self.profile_reason,
            "model_folder": str(self.model.path) if self.model else None,
            "model_revision": self.model.revision() if self.model else None,
            "model_files": self.model.file_fingerprints() if self.model else {},
            "libraries": library_versions(),
            "device": device_name(spec.device),
        }


class DiffusionBackend(DiffusionModel, Backend):
    """A video backend whose stages are diffusers pipelines loaded from a :class:`LoadSpec`."""


class DiffusionPictureBackend(DiffusionModel, PictureBackend):
    """A keyframe backend that is a diffusers image pipeline loaded from a :class:`LoadSpec`.

    Subclasses name the pipeline class their folder must hold and the input pictures it refuses (too small, too
    long), so both are found before anything loads rather than half-way through a draw.
    """

    pipeline_class: ClassVar[str]
    folder_hint: ClassVar[str] = ""  # what to point the backend at instead, said when the folder is wrong
    min_picture_side: ClassVar[int] = 1
    max_aspect_ratio: ClassVar[float] = 200.0

    @classmethod
    def check_request(cls, request: PictureRequest) -> None:
        """The shared checks, then the input pictures the pipeline would refuse half-way through a draw."""
        super().check_request(request)
        for what, picture in request.input_pictures(cls.capabilities.max_images):
            width, height = picture.size
            named = f"{what}'s reference picture" if what in request.subject_names() else f"the {what} picture"
            if min(width, height) < cls.min_picture_side:
                raise RequestError(
                    f"{named} is {width}x{height}; {cls.label} needs input pictures at least "
                    f"{cls.min_picture_side} px on each side"
                )
            if max(width / height, height / width) > cls.max_aspect_ratio:
                raise RequestError(
                    f"{named} is {width}x{height}; {cls.label} takes input pictures no longer than "
                    f"{cls.max_aspect_ratio:g}:1, crop it"
                )

    def preflight(self, request: PictureRequest) -> None:
        """A folder holding another pipeline is found before anything loads (settling reads only its index)."""
        del request
        if self.settled is None:
            self.settle()
        if self.model is not None and self.model.pipeline_class != self.pipeline_class:
            hint = self.folder_hint or f"a {self.pipeline_class} folder"
            raise ModelError(
                f"{self.model.path} holds a {self.model.pipeline_class or 'model without a pipeline class'}, not "
                f"{self.pipeline_class}; point {self.name} at {hint}"
            )

    def drawn(
        self,
        request: PictureRequest,
        out: Any,
        pipe: Any,
        timer: StageTimer,
        *,
        notes: Sequence[str] = (),
        **used: Any,
    ) -> PictureResult:
        """The picture a pipeline call drew, as a result: exactly the size asked for (a pipeline that rounded it
        is an error, not a surprise), with the request's parameters, what was ``used`` (steps, guidance, the
        prompt the model was given, its input pictures...), the weights' provenance, timings and peak memory."""
        image = out.images[0].convert("RGB")
        if image.size != (request.width, request.height):
            raise BackendError(
                f"{self.label} drew {image.width}x{image.height} for a {request.width}x{request.height} request; "
                f"this model's sizes go in steps of {pipe.vae_scale_factor * 2} px"
            )
        parameters = request.parameters() | {"backend": self.name, **used, "provenance": self.provenance()}
        return PictureResult(
            image=image,
            parameters=parameters,
            timings=dict(timer.timings),
            peak_memory=timer.peak_memory(),
            notes=tuple(notes),
        )


class Loaded:
    """A loaded backbone and what was loaded to go with it (a refiner sharing its VAE), evicted together."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._extras: dict[Any, Any] = {}

    def extra(self, key: Any, loader: Callable[[], Any]) -> Any:
        if key not in self._extras:
            self._extras[key] = loader()
        return self._extras[key]


def step_callback(
    progress: ProgressFn, cancel: CancelToken, stage: str, total: int
) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """A ``callback_on_step_end`` that reports progress and, on cancel, raises the pipeline's interrupt flag."""

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        del timestep
        progress(stage, step + 1, total)
        if cancel.cancelled:
            pipe._interrupt = True  # diffusers' documented way to stop the denoising loop at this step
        return kwargs

    return on_step_end


def check_cancelled(cancel: CancelToken, stage: str) -> None:
    if cancel.cancelled:
        raise GenerationCancelled(f"cancelled during {stage}")


def generator(seed: int) -> Any:
    """A CPU generator: the same seed gives the same noise whatever device the model runs on."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def to_uint8(frames: Any) -> np.ndarray:
    """Frames in ``[0, 1]`` floats, ``(T, H, W, 3)`` (or with a batch of one), as ``uint8``."""
    array = np.asarray(frames)
    if array.ndim == 5:
        array = array[0]
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


class StageTimer:
    """Seconds per stage and peak memory (CUDA allocator peak where there is a GPU, process RSS always)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        import torch

        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)

    def peak_memory(self) -> dict[str, int]:
        peak = {"process_rss_bytes": _max_rss_bytes()}
        if self._cuda:
            import torch

            peak["cuda_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        return peak


class _Stage:
    def __init__(self, timer: StageTimer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.timings[self.name] = self.timer.timings.get(self.name, 0.0) + time.perf_counter() - self.start


def _max_rss_bytes() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


@functools.cache
def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}  # cached: a process does not change its libraries
    for package in ("torch", "diffusers", "transformers", "accelerate", "bitsandbytes", "torchao"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_name(device: str) -> str:
    import torch

    if is_cuda(device) and torch.cuda.is_available():
        return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {platform.processor() or platform.machine()}"
