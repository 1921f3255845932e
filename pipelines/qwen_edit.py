"""Qwen-Image-Edit: a keyframe drawn from up to three of the cast's pictures by a picture-editing model.

diffusers' ``QwenImageEditPlusPipeline`` runs Qwen-Image-Edit-2509 and -2511 (Apache-2.0: a 20B MMDiT, the
Qwen2.5-VL-7B text encoder and the Qwen-Image VAE). It takes its input pictures as one ordered list and sees each
twice: the Qwen2.5-VL encoder reads it (at about 384x384) inside the prompt, where the pipeline labels it
``Picture 1: <picture>``, ``Picture 2: <picture>``, ...; and the VAE encodes it (at about one megapixel, whatever
its size) into tokens the transformer attends to beside the picture being drawn. So
:meth:`PictureRequest.input_pictures` chooses and orders them (each character's best reference, then the scene)
and :meth:`PictureRequest.model_prompt` says with the pipeline's own word, "Picture N", which shows whom.

What the pipeline does, and so what a request must give:

- the picture drawn is the request's size, which must be a multiple of 16 (the VAE's 8x and 2x2 latent patches;
  the pipeline would round another size down, with only a logged warning);
- input pictures may be any size, but no longer than 200:1: Qwen2-VL's image processor refuses longer ones;
- guidance is true classifier-free guidance (``true_cfg_scale``), which runs only with a negative prompt: without
  one the model card's single space is given. At 1 or less there is no guidance and a negative prompt is unused;
- the model cards' settings are 40 steps at guidance 4.0. One step is refused: Qwen-Image's scheduler stretches its
  schedule to end at a set noise level (``shift_terminal``), which divides zero by zero for a one-step schedule and
  draws a picture of NaNs.

The pipeline's ``processor`` component is a ``Qwen2VLProcessor``, which transformers builds with a video processor
that needs torchvision. The pipeline never gives it a video, so it is loaded here for pictures only, from the same
files (``processor/``), and the studio does not need torchvision.

Model folder layout (what ``hf download Qwen/Qwen-Image-Edit-2509`` or ``save_pretrained`` writes)::

    qwen-image-edit/    model_index.json, transformer/, text_encoder/, tokenizer/, processor/, vae/, scheduler/

Nothing here imports torch, transformers or diffusers at import time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pipelines.backend import CancelToken, ProgressFn, RequestError
from pipelines.diffusion import DiffusionPictureBackend, Loaded, StageTimer, check_cancelled, generator, step_callback
from pipelines.keyframes import VIEWS, PictureCapabilities, PictureRequest, PictureResult
from pipelines.memory_plan import Geometry, WorkSize

MAX_IMAGES = 3  # Qwen-Image-Edit-2509/2511 work best with one to three input pictures (their model cards)
PICTURE_WORD = "Picture"  # the pipeline labels its input pictures "Picture 1:", "Picture 2:", ... in the prompt
EMPTY_NEGATIVE_PROMPT = " "  # the model cards' negative prompt: true guidance needs one, even an empty one
MIN_STEPS = 2  # one step stretched to the scheduler's terminal noise level is 0/0


class QwenImageEditBackend(DiffusionPictureBackend):
    """Keyframes from Qwen-Image-Edit-2509/2511. The transformer and the Qwen2.5-VL text encoder are the
    components worth quantizing (``choose_profile``'s big components); the VAE stays in the working dtype."""

    name = "qwen-image-edit"
    label = "Qwen-Image-Edit"
    default_source = "Qwen/Qwen-Image-Edit-2509"
    # A 3072-wide MMDiT over 16x16-pixel tokens, each input picture's tokens joining the sequence; true guidance
    # runs as two passes. Planned at 1024x1024 with three input pictures.
    memory_geometry = Geometry(
        spatial=8, temporal=1, patch=(1, 2, 2), hidden=3072, guidance_batch=1, vae_channels=96, context_pictures=3
    )
    plan_size = WorkSize(1024, 1024, 1)
    default_steps = 40
    default_guidance = 4.0  # true_cfg_scale
    capabilities = PictureCapabilities(
        max_images=MAX_IMAGES,
        views=VIEWS,
        size_multiple=16,
        max_side=2048,
        needs_gpu=True,
    )
    pipeline_class = "QwenImageEditPlusPipeline"
    folder_hint = "Qwen-Image-Edit-2509 or -2511 (the first Qwen-Image-Edit takes one picture only)"
    max_aspect_ratio = 200.0  # Qwen2-VL's image processor refuses pictures longer than this

    @classmethod
    def check_request(cls, request: PictureRequest) -> None:
        """The shared checks, then the pictures the pipeline would refuse half-way through a draw."""
        super().check_request(request)
        if request.steps is not None and request.steps < MIN_STEPS:
            raise RequestError(
                f"{cls.label} needs at least {MIN_STEPS} steps (its scheduler cannot end a one-step schedule at its "
                f"final noise level), got {request.steps}"
            )
        if not request.input_pictures(MAX_IMAGES):
            raise RequestError(f"{cls.label} draws from pictures: give the characters reference pictures or a scene")

    def _loaded(self) -> Loaded:
        return self.load(self.name, QwenImageEditPlusForPictures, self.spec)

    def _draw(self, request: PictureRequest, progress: ProgressFn, cancel: CancelToken) -> PictureResult:
        timer = StageTimer()
        with timer.stage("load"):
            loaded = self._loaded()
        pipe = loaded.pipe
        chosen = request.input_pictures(MAX_IMAGES)
        prompt = request.model_prompt(MAX_IMAGES, PICTURE_WORD)
        steps = request.steps or self.default_steps
        guidance = request.guidance if request.guidance is not None else self.default_guidance
        negative_prompt, notes = self._negative_prompt(request, guidance)
        with timer.stage("keyframe"):
            out = pipe(
                image=[picture.convert("RGB") for _what, picture in chosen],
                prompt=prompt,
                negative_prompt=negative_prompt,
                true_cfg_scale=guidance,
                height=request.height,
                width=request.width,
                num_inference_steps=steps,
                generator=generator(request.seed),
                output_type="pil",
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
            model_prompt=prompt,
            input_pictures=[what for what, _picture in chosen],
        )

    def _negative_prompt(self, request: PictureRequest, guidance: float) -> tuple[str | None, list[str]]:
        """What the pipeline is given as its negative prompt. True guidance runs only when there is one, so with
        guidance an empty one is the model cards' single space; without guidance (1 or less) a negative prompt is
        not passed (the pipeline would ignore it and log a warning) and one the request gave is noted as unused."""
        words = request.negative_prompt.strip()
        if guidance > 1.0:
            return words or EMPTY_NEGATIVE_PROMPT, []
        if words:
            return None, [f"guidance {guidance:g} runs no classifier-free guidance; the negative prompt was not used"]
        return None, []


class QwenImageEditPlusForPictures:
    """Loads a ``QwenImageEditPlusPipeline`` folder with its processor for pictures only.

    ``Qwen2VLProcessor.from_pretrained`` would also build Qwen2-VL's video processor, which needs torchvision;
    the pipeline only ever gives the processor pictures. So the processor is made here from the folder's
    ``processor/`` files (its tokenizer and image processor) and handed to ``from_pretrained`` as a component.
    """

    @classmethod
    def from_pretrained(cls, folder: Any, **kwargs: Any) -> Any:
        from diffusers import QwenImageEditPlusPipeline

        return QwenImageEditPlusPipeline.from_pretrained(folder, processor=picture_processor(folder), **kwargs)


def picture_processor(folder: Any) -> Any:
    """The ``Qwen2VLProcessor`` of a Qwen-Image-Edit folder, without its video processor."""
    from transformers import AutoImageProcessor, Qwen2Tokenizer

    files = Path(folder) / "processor"
    tokenizer = Qwen2Tokenizer.from_pretrained(files, local_files_only=True)
    # torchvision's image processor where it is installed, else the PIL one: what the pipeline would load itself.
    image_processor = AutoImageProcessor.from_pretrained(files, local_files_only=True)
    return _picture_processor_class()(image_processor=image_processor, tokenizer=tokenizer)


@functools.cache
def _picture_processor_class() -> type:
    """A ``Qwen2VLProcessor`` made of an image processor and a tokenizer only (made on first use: nothing from
    transformers is imported with this module)."""
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class Qwen2VLPictureProcessor(Qwen2VLProcessor):
        """Qwen2-VL's processor for prompts with pictures and no videos. Its sub-processors are the parameters of
        ``__init__``, so leaving out ``video_processor`` leaves out the video processor and torchvision."""

        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None) -> None:
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return Qwen2VLPictureProcessor
