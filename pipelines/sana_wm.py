"""SANA-WM, the flagship backend: a camera-controlled image-to-video backbone and the LTX-2 refiner.

Stage 1 is diffusers' ``SanaWMPipeline``: first frame + prompt + camera path (the studio's camera grammar is
SANA-WM's own action string) rendered at minute scale in one pass. Stage 2, when the refiner is on, is
``SanaWMLTX2Refiner`` (LTX-2, chunk-causal, 3-step distilled) run on the stage-1 latents and decoding through
the same VAE. The refiner keeps the anchor latent frame and drops its decoded frame, so a refined take is one
frame shorter than its stage-1 render.

Weights, as published for diffusers 0.42.1: stage 1 is ``Efficient-Large-Model/SANA-WM_bidirectional-diffusers``
and the refiner its own repository, ``Efficient-Large-Model/SANA-WM_bidirectional-diffusers-refiner`` (loaded with
stage 1's VAE passed in). The refiner is found under its own weights name, ``sana-wm-refiner``, as any weights are
(``CONTINUITY_MODEL_SANA_WM_REFINER``, ``<models>/sana-wm-refiner``, the hub cache), and else in a ``refiner/``
folder inside the SANA-WM folder, the layout earlier versions of the studio used::

    sana-wm/              SanaWMPipeline: model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/
    sana-wm-refiner/      SanaWMLTX2Refiner: model_index.json, transformer/, connectors/, text_encoder/, ...
    sana-wm/refiner/      (the same, inside the stage-1 folder)

SANA-WM needs camera intrinsics. The studio gives a 60 degree horizontal field of view centred on the
keyframe, in the keyframe's own pixels (the pipeline rescales them for its crop). Its camera code does not run
in half precision on the CPU, so the CPU path is float32.
"""

from __future__ import annotations

import math

from pipelines.backend import (
    CancelToken,
    Capabilities,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    RequestError,
)
from pipelines.camera import parse_camera
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

HORIZONTAL_FOV_DEGREES = 60.0
REFINER_FOLDER = "refiner"
REFINER_COMPONENTS = ("transformer", "text_encoder")


def intrinsics_for(width: int, height: int, fov_degrees: float = HORIZONTAL_FOV_DEGREES) -> list[float]:
    """``[fx, fy, cx, cy]`` for a pinhole camera with this horizontal field of view, in image pixels."""
    focal = (width / 2) / math.tan(math.radians(fov_degrees) / 2)
    return [focal, focal, width / 2, height / 2]


class SanaWMBackend(DiffusionBackend):
    name = "sana-wm"
    label = "SANA-WM"
    default_source = "Efficient-Large-Model/SANA-WM_bidirectional-diffusers"
    extra_folders = ()  # the refiner is optional: without it the refiner is unavailable, not the backend
    refiner_key = "sana-wm-refiner"
    refiner_default_source = "Efficient-Large-Model/SANA-WM_bidirectional-diffusers-refiner"
    refiner_folder = REFINER_FOLDER  # where earlier layouts kept it, inside the stage-1 folder
    refiner_published_beside = True  # a stage-1 repository REPO has its refiner at REPO-refiner
    default_steps = 60
    default_guidance = 5.0
    # A 32x spatial, 8x temporal LTX-2 VAE; an unpatched 2240-wide DiT run with guidance as a batch of two; the
    # decoder's last levels hold 128 channels at a quarter of the resolution and coarser ones below (about 16 per
    # output pixel). Planned at 720p for 10 s, its native size.
    # The refiner is LTX-2's 4096-wide DiT, distilled (no guidance pass).
    memory_geometry = Geometry(
        spatial=32,
        temporal=8,
        patch=(1, 1, 1),
        hidden=2240,
        vae_channels=16,
        refiner=Geometry(spatial=32, temporal=8, patch=(1, 1, 1), hidden=4096, guidance_batch=1, vae_channels=16),
    )
    plan_size = WorkSize(1280, 704, 161)
    refiner_loads = ("transformer", "connectors", "text_encoder")  # the VAE is stage 1's
    capabilities = Capabilities(
        image_to_video=True,
        text_only=False,
        reference_images=0,
        last_frame=False,
        camera_control="path",
        refiner=True,
        max_frames=961,  # a minute at 16 fps, in one pass
        frame_stride=8,
        size_multiple=32,
        max_side=1920,
        needs_gpu=True,
    )

    def __init__(
        self, spec: LoadSpec, *, cache: PipelineCache | None = None, refiner_spec: LoadSpec | None = None
    ) -> None:
        super().__init__(spec, cache=cache)
        self.refiner_weights = refiner_spec  # the refiner found under its own weights name, if it was

    def _loaded(self) -> Loaded:
        from diffusers import SanaWMPipeline

        return self.load(self.name, SanaWMPipeline, self.spec)

    def refiner_spec(self) -> LoadSpec:
        """The refiner's weights, loaded as the backbone is (see :meth:`settled_refiner`)."""
        source, revision = self._refiner_source()
        return self.settled_refiner(source, revision, REFINER_COMPONENTS)

    def refiner_sizes(self) -> list[ComponentSize]:
        try:
            source, _revision = self._refiner_source()
        except RequestError:
            return []
        return folder_sizes(source, "refiner", self.refiner_loads)

    def _refiner_source(self) -> tuple[str, str | None]:
        """Its own weights (``sana-wm-refiner``), else the ``refiner/`` folder inside the SANA-WM folder."""
        if self.refiner_weights is not None:
            try:
                inspect_model_folder(resolve_source(self.refiner_weights.source, self.refiner_weights.revision))
            except ModelError as exc:
                raise RequestError(f"the SANA-WM refiner's weights cannot be used: {exc}") from None
            return self.refiner_weights.source, self.refiner_weights.revision
        inner = self.model.path / REFINER_FOLDER if self.model else None
        if inner is not None and (inner / "model_index.json").is_file():
            return str(inner), None
        raise RequestError(
            "the SANA-WM refiner is not installed: fetch it (python app.py fetch-weights sana-wm-refiner "
            f"{self.refiner_default_source}), set CONTINUITY_MODEL_SANA_WM_REFINER to its folder, or turn the "
            "refiner off"
        )

    def preflight(self, request: GenerationRequest) -> None:
        """A missing refiner is found before the backbone loads, not after it rendered."""
        if request.refiner.enabled:
            self.refiner_spec()

    def _generate(self, request: GenerationRequest, progress: ProgressFn, cancel: CancelToken) -> GenerationResult:
        timer = StageTimer()
        with timer.stage("load"):
            loaded = self._loaded()
        pipe = loaded.pipe
        keyframe = request.keyframe.convert("RGB")
        action = parse_camera(request.camera).to_action(request.num_frames - 1)
        steps = request.steps or self.default_steps
        guidance = request.guidance if request.guidance is not None else self.default_guidance
        intrinsics = intrinsics_for(keyframe.width, keyframe.height)
        refine = request.refiner.enabled
        refiner = None
        if refine:
            refiner_spec = self.refiner_spec()
            from diffusers.pipelines.sana_wm import SanaWMLTX2Refiner

            with timer.stage("refiner_load"):
                refiner = loaded.extra(
                    ("refiner", refiner_spec), lambda: load_pipeline(SanaWMLTX2Refiner, refiner_spec, vae=pipe.vae)
                )
        with timer.stage("backbone"):
            out = pipe(
                image=keyframe,
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                action=action,
                intrinsics=intrinsics,
                height=request.height,
                width=request.width,
                num_frames=request.num_frames,
                fps=request.fps,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator(request.seed),
                output_type="latent" if refine else "np",
                callback_on_step_end=step_callback(progress, cancel, "backbone", steps),
            )
        check_cancelled(cancel, "the backbone")
        latents = out.latent
        if refiner is None:
            frames = to_uint8(out.frames)
        else:
            progress("refiner", 0, 1)
            with timer.stage("refiner"):
                refined = refiner(
                    latents, request.prompt, fps=request.fps, generator=generator(request.seed), output_type="np"
                )
            check_cancelled(cancel, "the refiner")
            progress("refiner", 1, 1)
            frames = to_uint8(refined)
        parameters = request.parameters() | {
            "backend": self.name,
            "action": action,
            "intrinsics": intrinsics,
            "steps": steps,
            "guidance": guidance,
            "num_frames": int(frames.shape[0]),
            "stage1_frames": request.num_frames,
            "provenance": self.provenance(),
        }
        notes = ()
        if refiner is not None:
            parameters["provenance"]["refiner"] = self.refiner_provenance(self.refiner_spec())
            notes = (f"the refiner keeps the anchor frame out of the video: {frames.shape[0]} frames",)
        return GenerationResult(
            frames=frames,
            fps=request.fps,
            parameters=parameters,
            timings=dict(timer.timings),
            peak_memory=timer.peak_memory(),
            latents=latents,
            notes=notes,
        )
