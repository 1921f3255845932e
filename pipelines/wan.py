"""Wan 2.1/2.2 backends: image-to-video with an optional last frame, and VACE with character references.

Both take the studio's camera grammar as words in the prompt (Wan has no camera input). Both can run a
video-to-video refiner at low strength on their output; it is a Wan text-to-video model
(``WanVideoToVideoPipeline``), loaded from its own folder and sharing the text encoder and VAE of the
backbone where they match.

Wan renders ``4k+1`` frames at sizes that are multiples of 16.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from PIL import Image

from pipelines.backend import (
    CancelToken,
    Capabilities,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    RequestError,
)
from pipelines.camera import CameraPath, parse_camera
from pipelines.diffusion import (
    DiffusionBackend,
    Loaded,
    StageTimer,
    check_cancelled,
    generator,
    step_callback,
    to_uint8,
)
from pipelines.loading import LoadSpec, PipelineCache, load_pipeline
from pipelines.memory_plan import ComponentSize, Geometry, WorkSize
from pipelines.model_folder import ModelError, inspect_model_folder, resolve_source
from pipelines.published import folder_sizes

_PRESET_WORDS = {
    "static": "static camera, locked-off shot",
    "dolly-in": "the camera slowly dollies in",
    "dolly-out": "the camera slowly dollies out",
    "truck-left": "the camera trucks left",
    "truck-right": "the camera trucks right",
    "pan-left": "the camera pans left",
    "pan-right": "the camera pans right",
    "tilt-up": "the camera tilts up",
    "tilt-down": "the camera tilts down",
    "orbit-left": "the camera orbits left around the subject",
    "orbit-right": "the camera orbits right around the subject",
}
_KEY_WORDS = {
    "w": "moves forward",
    "s": "moves back",
    "a": "moves left",
    "d": "moves right",
    "i": "tilts up",
    "k": "tilts down",
    "j": "pans left",
    "l": "pans right",
}
_KEY_ORDER = "wsadijkl"
REFINER_DEFAULT_STEPS = 8


def camera_words(path: CameraPath) -> str:
    """The camera move in words Wan was trained on ("the camera pans left, then holds")."""
    if path.preset is not None:
        return _PRESET_WORDS[path.preset]
    parts = []
    for move in path.moves:
        if not move.keys:
            phrase = "holds still"
        else:
            phrase = " and ".join(_KEY_WORDS[key] for key in _KEY_ORDER if key in move.keys)
        if not parts or parts[-1] != phrase:
            parts.append(phrase)
    return "the camera " + ", then ".join(parts)


def prompt_with_camera(prompt: str, camera: str) -> str:
    return f"{prompt.rstrip().rstrip('.')}. {camera_words(parse_camera(camera)).capitalize()}."


# The refiner: Wan 2.1 T2V 1.3B, a 1536-wide DiT.
# Every Wan model: the Wan VAE (8x spatial, 4x temporal; it decodes four frames at a time with 96 channels at full
# resolution), 2x2 patches, guidance run as two passes. The refiner is Wan 2.1 T2V 1.3B, a 1536-wide DiT.
REFINER_GEOMETRY = Geometry(
    spatial=8, temporal=4, patch=(1, 2, 2), hidden=1536, guidance_batch=1, vae_channels=96, vae_frames=4
)


class _WanBackend(DiffusionBackend):
    """What the two Wan backends share: the prompt, the refiner, and turning output into frames."""

    required_modules = ("torch", "diffusers", "transformers", "ftfy")
    default_steps = 30
    default_guidance = 5.0
    pipeline_name: ClassVar[str]
    refiner_key: ClassVar[str] = "wan-refiner"
    refiner_default_source: ClassVar[str | None] = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    refiner_loads = ("transformer",)  # the refiner borrows the backbone's text encoder and VAE

    def __init__(
        self, spec: LoadSpec, *, cache: PipelineCache | None = None, refiner_spec: LoadSpec | None = None
    ) -> None:
        super().__init__(spec, cache=cache)
        self.refiner_spec = refiner_spec

    def _refiner_load_spec(self) -> LoadSpec:
        """The refiner's spec as given where it is settled, else loaded as the backbone is."""
        spec = self.refiner_spec
        assert spec is not None
        return spec if spec.settled else self.settled_refiner(spec.source, spec.revision, self.refiner_loads)

    def refiner_sizes(self) -> list[ComponentSize]:
        if self.refiner_spec is None:
            return []
        try:
            return folder_sizes(self.refiner_spec.source, "refiner", self.refiner_loads)
        except ModelError:
            return []

    def preflight(self, request: GenerationRequest) -> None:
        """The refiner's settings and weights, checked before the backbone spends minutes rendering."""
        if not request.refiner.enabled:
            return
        if self.refiner_spec is None:
            raise RequestError(
                "the Wan refiner needs Wan text-to-video weights: set CONTINUITY_MODEL_WAN_REFINER or put them in "
                "<models dir>/wan-refiner, or turn the refiner off"
            )
        steps = request.refiner.steps or REFINER_DEFAULT_STEPS
        strength = request.refiner.strength
        if not 0.0 < strength <= 1.0:
            raise RequestError(f"the refiner strength must be more than 0 and at most 1, got {strength}")
        if int(steps * strength) < 1:
            raise RequestError(
                f"the refiner would run {steps} x {strength} = 0 steps; raise its steps to at least "
                f"{int(1 / strength) + 1} or its strength"
            )
        try:
            inspect_model_folder(resolve_source(self.refiner_spec.source, self.refiner_spec.revision))
        except ModelError as exc:
            raise RequestError(f"the Wan refiner's weights cannot be used: {exc}") from None

    def _loaded(self) -> Loaded:
        import diffusers

        return self.load(self.name, getattr(diffusers, self.pipeline_name), self.spec)

    def _refine(
        self,
        loaded: Loaded,
        frames: Any,
        request: GenerationRequest,
        prompt: str,
        progress: ProgressFn,
        cancel: CancelToken,
        timer: StageTimer,
    ) -> Any:
        steps = request.refiner.steps or REFINER_DEFAULT_STEPS
        strength = request.refiner.strength
        import diffusers

        refiner_spec = self._refiner_load_spec()

        def load_refiner() -> Any:
            transformer = load_pipeline(_TransformerOnly, refiner_spec)
            pipeline = diffusers.WanVideoToVideoPipeline.from_pipe(loaded.pipe, transformer=transformer)
            pipeline.set_progress_bar_config(disable=True)
            return pipeline

        with timer.stage("refiner_load"):
            refiner = loaded.extra(("refiner", refiner_spec), load_refiner)
        video = [Image.fromarray(frame) for frame in frames]
        total = int(steps * strength)
        with timer.stage("refiner"):
            out = refiner(
                video=video,
                prompt=prompt,
                negative_prompt=request.negative_prompt,
                height=request.height,
                width=request.width,
                strength=strength,
                num_inference_steps=steps,
                guidance_scale=request.guidance if request.guidance is not None else self.default_guidance,
                generator=generator(request.seed + 1),
                output_type="np",
                callback_on_step_end=step_callback(progress, cancel, "refiner", total),
            )
        check_cancelled(cancel, "the refiner")
        return to_uint8(out.frames)

    def conditioning(self, request: GenerationRequest) -> dict[str, Any]:
        """The pictures this pipeline is conditioned on, as keyword arguments of its call."""
        raise NotImplementedError

    def extra_parameters(self, request: GenerationRequest) -> dict[str, Any]:
        del request
        return {}

    def _generate(self, request: GenerationRequest, progress: ProgressFn, cancel: CancelToken) -> GenerationResult:
        timer = StageTimer()
        with timer.stage("load"):
            loaded = self._loaded()
        prompt = prompt_with_camera(request.prompt, request.camera)
        steps = request.steps or self.default_steps
        with timer.stage("backbone"):
            out = loaded.pipe(
                prompt=prompt,
                negative_prompt=request.negative_prompt,
                height=request.height,
                width=request.width,
                num_frames=request.num_frames,
                num_inference_steps=steps,
                guidance_scale=request.guidance if request.guidance is not None else self.default_guidance,
                generator=generator(request.seed),
                output_type="np",
                callback_on_step_end=step_callback(progress, cancel, "backbone", steps),
                **self.conditioning(request),
            )
        check_cancelled(cancel, "the backbone")
        frames = to_uint8(out.frames)
        if request.refiner.enabled:
            frames = self._refine(loaded, frames, request, prompt, progress, cancel, timer)
        return self._result(frames, request, prompt, timer, self.extra_parameters(request))

    def _result(
        self, frames: Any, request: GenerationRequest, prompt: str, timer: StageTimer, extra: dict[str, Any]
    ) -> GenerationResult:
        provenance = self.provenance()
        if request.refiner.enabled and self.refiner_spec is not None:
            provenance["refiner"] = self.refiner_provenance(self._refiner_load_spec())
        parameters = request.parameters() | {
            "backend": self.name,
            "model_prompt": prompt,
            "steps": request.steps or self.default_steps,
            "guidance": request.guidance if request.guidance is not None else self.default_guidance,
            "provenance": provenance,
            **extra,
        }
        return GenerationResult(
            frames=frames,
            fps=request.fps,
            parameters=parameters,
            timings=dict(timer.timings),
            peak_memory=timer.peak_memory(),
        )


class _TransformerOnly:
    """Loads just the transformer of a Wan text-to-video folder (the refiner reuses the backbone's rest)."""

    @classmethod
    def from_pretrained(cls, folder: Any, *, dtype: Any, quantization_config: Any = None, **kwargs: Any) -> Any:
        from diffusers import WanTransformer3DModel

        quant = None
        if quantization_config is not None:
            quant = quantization_config.quant_mapping.get("transformer")
        kwargs.pop("use_safetensors", None)
        return WanTransformer3DModel.from_pretrained(
            folder, subfolder="transformer", dtype=dtype, quantization_config=quant, use_safetensors=True, **kwargs
        )


class WanI2VBackend(_WanBackend):
    name = "wan-i2v"
    label = "Wan image-to-video"
    pipeline_name = "WanImageToVideoPipeline"
    default_source = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
    # Two 5120-wide experts, one at a time. Planned at 720p, 81 frames.
    memory_geometry = replace(REFINER_GEOMETRY, hidden=5120, refiner=REFINER_GEOMETRY)
    plan_size = WorkSize(1280, 720, 81)
    capabilities = Capabilities(
        image_to_video=True,
        text_only=False,
        reference_images=0,
        last_frame=True,
        camera_control="prompt",
        refiner=True,
        max_frames=81,
        frame_stride=4,
        size_multiple=16,
        max_side=1280,
        needs_gpu=True,
    )

    def conditioning(self, request: GenerationRequest) -> dict[str, Any]:
        size = (request.width, request.height)
        last = request.last_frame
        return {
            "image": request.keyframe.convert("RGB").resize(size, Image.LANCZOS),
            "last_image": last.convert("RGB").resize(size, Image.LANCZOS) if last is not None else None,
        }


class WanVACEBackend(_WanBackend):
    name = "wan-vace"
    label = "Wan VACE (character references)"
    pipeline_name = "WanVACEPipeline"
    default_source = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"
    # A 1536-wide DiT whose VACE blocks carry the control video's tokens beside the video's.
    memory_geometry = replace(REFINER_GEOMETRY, context_pictures=1, refiner=REFINER_GEOMETRY)
    plan_size = WorkSize(832, 480, 81)
    capabilities = Capabilities(
        image_to_video=True,
        text_only=True,
        reference_images=4,
        last_frame=True,
        camera_control="prompt",
        refiner=True,
        max_frames=81,
        frame_stride=4,
        size_multiple=16,
        max_side=1280,
        needs_gpu=True,
    )

    def conditioning(self, request: GenerationRequest) -> dict[str, Any]:
        return vace_conditioning(request)

    def extra_parameters(self, request: GenerationRequest) -> dict[str, Any]:
        return {"conditioned_frames": [i for i in (0, request.num_frames - 1) if _kept(request, i)]}


def _kept(request: GenerationRequest, index: int) -> bool:
    return (index == 0 and request.keyframe is not None) or (
        index == request.num_frames - 1 and request.last_frame is not None
    )


def vace_conditioning(request: GenerationRequest) -> dict[str, Any]:
    """VACE's inputs: character references, and a keyframe/last frame as kept frames of a masked video.

    In VACE's mask black keeps a frame as given and white generates it; frames to generate are grey.
    """
    size = (request.width, request.height)
    conditioning: dict[str, Any] = {}
    if request.references:
        conditioning["reference_images"] = [image.convert("RGB") for image in request.references]
    if request.keyframe is None and request.last_frame is None:
        return conditioning
    grey = Image.new("RGB", size, (128, 128, 128))
    keep, generate = Image.new("L", size, 0), Image.new("L", size, 255)
    video = [grey] * request.num_frames
    mask = [generate] * request.num_frames
    if request.keyframe is not None:
        video[0], mask[0] = request.keyframe.convert("RGB").resize(size, Image.LANCZOS), keep
    if request.last_frame is not None:
        video[-1], mask[-1] = request.last_frame.convert("RGB").resize(size, Image.LANCZOS), keep
    conditioning["video"] = video
    conditioning["mask"] = mask
    return conditioning
