"""FLUX.2 [klein]: a keyframe drawn from up to four of the cast's pictures in one pass.

diffusers' ``Flux2KleinPipeline`` (FLUX.2 [klein] 4B, Apache-2.0: a 4B flow transformer, the Qwen3-4B text
encoder and the FLUX.2 VAE) takes its input pictures as one ordered list. Each is encoded by the VAE and joined to
the picture being drawn as its own tokens, told apart by their place in the list; prompts name them "image 1",
"image 2", ... So :meth:`PictureRequest.input_pictures` chooses and orders them (each character's best reference,
then the scene) and :meth:`PictureRequest.model_prompt` says in the same words which image shows whom.

What the pipeline does with them, and so what a request must give:

- each input picture must be at least 64 px on a side and no more than 8:1; pictures over one megapixel are
  scaled down and each is cropped to a multiple of 16 by the pipeline itself;
- the picture drawn is the request's size, which must be a multiple of 16 (the VAE's 8x and 2x2 latent patches);
- there is no negative prompt in FLUX.2: one given is recorded as unused in the candidate's notes;
- the released 4B is step-distilled (``is_distilled`` in its ``model_index.json``): 4 steps and no
  classifier-free guidance. The undistilled "base" release, loaded from the same kind of folder, takes 50 steps
  with guidance 4.0; the defaults follow what the folder says it is.

Model folder layout (what ``hf download black-forest-labs/FLUX.2-klein-4B`` or ``save_pretrained`` writes)::

    flux2-klein/    model_index.json, transformer/, text_encoder/, tokenizer/, vae/, scheduler/

Nothing here imports torch or diffusers at import time.
"""

from __future__ import annotations

from pipelines.backend import CancelToken, ProgressFn
from pipelines.diffusion import DiffusionPictureBackend, Loaded, StageTimer, check_cancelled, generator, step_callback
from pipelines.keyframes import VIEWS, PictureCapabilities, PictureRequest, PictureResult
from pipelines.memory_plan import Geometry, WorkSize

MAX_IMAGES = 4  # FLUX.2 [klein] conditions on up to four reference pictures
IMAGE_WORD = "Image"  # FLUX.2's prompts refer to input pictures as "image 1", "image 2", ...
BASE_STEPS = 50  # the undistilled [klein] base models
BASE_GUIDANCE = 4.0


class Flux2KleinBackend(DiffusionPictureBackend):
    """Keyframes from FLUX.2 [klein] 4B. The transformer and the Qwen3 text encoder are the components worth
    quantizing (``choose_profile``'s big components); the VAE stays in the working dtype."""

    name = "flux2-klein"
    label = "FLUX.2 klein"
    default_source = "black-forest-labs/FLUX.2-klein-4B"
    # A 3072-wide DiT over 16x16-pixel tokens (no guidance pass), each input picture's tokens joining the
    # sequence. Planned at 1024x1024 with four input pictures.
    memory_geometry = Geometry(
        spatial=16, temporal=1, patch=(1, 1, 1), hidden=3072, guidance_batch=1, vae_channels=128, context_pictures=4
    )
    plan_size = WorkSize(1024, 1024, 1)
    default_steps = 4  # step-distilled
    default_guidance = 1.0  # guidance-free: the distilled model takes no classifier-free guidance
    capabilities = PictureCapabilities(
        max_images=MAX_IMAGES,
        views=VIEWS,
        size_multiple=16,
        max_side=2048,
        needs_gpu=True,
    )
    pipeline_class = "Flux2KleinPipeline"
    folder_hint = "a FLUX.2 [klein] folder such as black-forest-labs/FLUX.2-klein-4B"
    min_picture_side = 64  # Flux2ImageProcessor.check_image_input refuses smaller pictures
    max_aspect_ratio = 8.0

    def _loaded(self) -> Loaded:
        from diffusers import Flux2KleinPipeline

        return self.load(self.name, Flux2KleinPipeline, self.spec)

    def _draw(self, request: PictureRequest, progress: ProgressFn, cancel: CancelToken) -> PictureResult:
        timer = StageTimer()
        with timer.stage("load"):
            loaded = self._loaded()
        pipe = loaded.pipe
        distilled = bool(pipe.config.get("is_distilled", False))
        chosen = request.input_pictures(MAX_IMAGES)
        pictures = [picture.convert("RGB") for _what, picture in chosen]
        prompt = request.model_prompt(MAX_IMAGES, IMAGE_WORD)
        steps = request.steps or (self.default_steps if distilled else BASE_STEPS)
        guidance, notes = self._guidance(request, distilled)
        if request.negative_prompt.strip():
            notes.append(f"FLUX.2 takes no negative prompt; {request.negative_prompt.strip()!r} was not used")
        with timer.stage("keyframe"):
            out = pipe(
                image=pictures or None,
                prompt=prompt,
                height=request.height,
                width=request.width,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator(request.seed),
                callback_on_step_end=step_callback(progress, cancel, "keyframe", steps),
            )
        check_cancelled(cancel, "the keyframe")
        return self.drawn(
            request,
            out,
            pipe,
            timer,
            notes=notes,
            steps=steps,
            guidance=guidance,
            distilled=distilled,
            model_prompt=prompt,
            input_pictures=[what for what, _picture in chosen],
        )

    def _guidance(self, request: PictureRequest, distilled: bool) -> tuple[float, list[str]]:
        """The guidance scale passed to the pipeline. A step-distilled model has none (the pipeline would ignore
        it and log a warning), so it gets 1.0 and a request for more is noted, not silently dropped."""
        if not distilled:
            return (request.guidance if request.guidance is not None else BASE_GUIDANCE), []
        if request.guidance is not None and request.guidance != 1.0:
            return 1.0, [f"{self.label} is step-distilled and takes no guidance; {request.guidance:g} was not used"]
        return 1.0, []
