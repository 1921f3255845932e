"""The Qwen-Image-Edit keyframe backend on a tiny random model folder.

The folder is built in code and written with ``save_pretrained`` (``tests/tiny_qwen_edit.py``), then loaded through
the registry and the studio's real loader (``QwenImageEditPlusPipeline.from_pretrained``) on the CPU. The weights
are random, so only sizes, records, determinism, what the pipeline is given, and control flow mean anything. The
input pictures are real photographs from scikit-image (conftest's ``photos``).

The pipeline encodes every input picture through the VAE at about a megapixel, so a real draw costs about a second
per input picture however small the model: the real draws here are few, and what the pipeline is given for other
requests is checked by recording its call in place of running it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.backend import BackendError, CancelToken, GenerationCancelled, RequestError
from pipelines.keyframes import VIEW_PROMPTS, PictureRequest, PictureResult, Subject
from pipelines.loading import LoadSpec, PipelineCache, quantization_config
from pipelines.model_folder import ModelError, inspect_model_folder
from pipelines.qwen_edit import PICTURE_WORD, QwenImageEditBackend, picture_processor
from pipelines.registry import create_picture_backend, plan_backend

WIDTH, HEIGHT = 48, 64  # not square, so a swapped width and height would show
MARA = "a red-haired keeper in a green coat"
TOM = "a ginger cat with white paws"
BIG_COMPONENTS = ("transformer", "text_encoder")

Calls = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_qwen_edit import build_qwen_edit_folder

    return build_qwen_edit_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> dict[str, Image.Image]:
    """astronaut 128x128, chelsea (a cat), coffee and rocket: 128 px wide, about 85 high."""
    loaded = {}
    for name, path in photos.items():
        with Image.open(path) as image:
            loaded[name] = image.convert("RGB")
    return loaded


def new_backend(folder: Path, **spec_fields: Any) -> QwenImageEditBackend:
    spec = LoadSpec.create(folder, **({"device": "cpu"} | spec_fields))
    backend = create_picture_backend("qwen-image-edit", spec=spec, cache=PipelineCache(capacity=1))
    assert isinstance(backend, QwenImageEditBackend)
    return backend


@pytest.fixture(scope="module")
def backend(folder: Path) -> QwenImageEditBackend:
    return new_backend(folder)


def portrait_request(images: dict[str, Image.Image], **fields: Any) -> PictureRequest:
    """Mara's profile for her character sheet, from one reference: one input picture, 2 steps, the default
    guidance (true classifier-free guidance, so the pipeline runs twice a step)."""
    values: dict[str, Any] = {
        "prompt": "Mara on a plain background",
        "width": WIDTH,
        "height": HEIGHT,
        "seed": 3,
        "steps": 2,
        "subjects": (Subject("Mara", MARA, (images["astronaut"],)),),
        "view": "profile",
    }
    return PictureRequest(**(values | fields))


def shot_request(images: dict[str, Image.Image], **fields: Any) -> PictureRequest:
    """Mara (two references) and Tom at the lighthouse (a location picture): four pictures for three places; 2 steps
    (the fewest the scheduler takes) without guidance."""
    values: dict[str, Any] = {
        "prompt": "Mara and Tom climb the stairs of the lighthouse",
        "width": WIDTH,
        "height": HEIGHT,
        "seed": 5,
        "steps": 2,
        "guidance": 1.0,
        "subjects": (
            Subject("Mara", MARA, (images["astronaut"], images["rocket"])),
            Subject("Tom", TOM, (images["chelsea"],)),
        ),
        "scene": images["coffee"],
        "scene_kind": "location",
    }
    return PictureRequest(**(values | fields))


def record_calls(
    monkeypatch: pytest.MonkeyPatch, *, run: bool = True, drawn_size: tuple[int, int] | None = None
) -> Calls:
    """Record the keyword arguments of every pipeline call and the text its processor is given.

    ``run=False`` answers each call with a grey picture (of the requested size, or ``drawn_size``) instead of
    running the model: what the backend gives the pipeline is then checked in no time.
    """
    from diffusers import QwenImageEditPlusPipeline
    from transformers import Qwen2VLProcessor

    calls: Calls = {"pipeline": [], "processor": []}
    real_call = QwenImageEditPlusPipeline.__call__
    real_processor = Qwen2VLProcessor.__call__

    def pipeline_spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["pipeline"].append(kwargs)
        if run:
            return real_call(self, *args, **kwargs)
        size = drawn_size or (kwargs["width"], kwargs["height"])
        return SimpleNamespace(images=[Image.new("RGB", size, (128, 128, 128))])

    def processor_spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["processor"].append(kwargs)
        return real_processor(self, *args, **kwargs)

    monkeypatch.setattr(QwenImageEditPlusPipeline, "__call__", pipeline_spy)
    monkeypatch.setattr(Qwen2VLProcessor, "__call__", processor_spy)
    return calls


@pytest.fixture(scope="module")
def portrait(backend: QwenImageEditBackend, images: dict[str, Image.Image]) -> PictureResult:
    return backend.draw(portrait_request(images))


@pytest.fixture(scope="module")
def shot(backend: QwenImageEditBackend, images: dict[str, Image.Image]) -> tuple[PictureResult, Calls]:
    """A shot's keyframe from three input pictures, without guidance (one pass a step), drawn for real."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = record_calls(monkeypatch)
        result = backend.draw(shot_request(images, negative_prompt="blurry"))
    return result, calls


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return record_calls(monkeypatch, run=False)


def pixels(result: PictureResult) -> np.ndarray:
    return np.asarray(result.image)


def assert_same_pictures(given: list[Image.Image], wanted: list[Image.Image]) -> None:
    assert len(given) == len(wanted)
    for index, (picture, expected) in enumerate(zip(given, wanted, strict=True)):
        assert picture.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(picture), np.asarray(expected), err_msg=f"picture {index + 1}")


# A candidate.


def test_a_candidate_is_drawn_at_the_requested_size(portrait: PictureResult) -> None:
    assert portrait.image.mode == "RGB"
    assert portrait.image.size == (WIDTH, HEIGHT)
    assert len(np.unique(pixels(portrait))) > 1, "the picture is one flat colour"
    parameters = portrait.parameters
    json.dumps(parameters)
    assert parameters["backend"] == "qwen-image-edit"
    assert (parameters["width"], parameters["height"], parameters["seed"]) == (WIDTH, HEIGHT, 3)
    assert (parameters["steps"], parameters["guidance"]) == (2, 4.0)
    assert parameters["view"] == "profile"
    assert parameters["input_pictures"] == ["Mara"]
    assert parameters["model_prompt"] == (
        f"Picture 1 shows Mara, {MARA}. {VIEW_PROMPTS['profile'].capitalize()}. Mara on a plain background"
    )
    assert set(portrait.timings) == {"load", "keyframe"}
    assert portrait.peak_memory["process_rss_bytes"] > 0
    assert portrait.notes == ()


def test_provenance_names_the_weights_folder_and_load_spec(portrait: PictureResult, folder: Path) -> None:
    provenance = portrait.parameters["provenance"]
    assert provenance["model_folder"] == str(folder.resolve())
    assert provenance["load_spec"] == {
        "source": str(folder),
        "revision": None,
        "dtype": "float32",
        "quantization": {},
        "offload": "none",
        "vae_tiling": False,
        "device": "cpu",
    }
    assert "no CUDA GPU" in provenance["profile_reason"]
    files = provenance["model_files"]
    assert set(files) == {
        "transformer/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }
    assert all(value.startswith("size:") for value in files.values())
    assert "diffusers" in provenance["libraries"]


def test_the_same_seed_draws_the_same_picture_another_seed_another(
    backend: QwenImageEditBackend, portrait: PictureResult, images: dict[str, Image.Image]
) -> None:
    again = backend.draw(portrait_request(images))
    np.testing.assert_array_equal(pixels(again), pixels(portrait))
    other = backend.draw(portrait_request(images, seed=4))
    assert not np.array_equal(pixels(other), pixels(portrait))


def test_the_pipeline_loads_once_for_all_candidates(
    backend: QwenImageEditBackend, portrait: PictureResult, shot: tuple[PictureResult, Calls]
) -> None:
    assert portrait.parameters["input_pictures"] != shot[0].parameters["input_pictures"]  # two different requests
    assert backend.cache.loads == 1
    assert len(backend.cache) == 1


# What the model is given.


def test_at_most_three_pictures_characters_first_then_the_scene(
    shot: tuple[PictureResult, Calls], images: dict[str, Image.Image]
) -> None:
    result, calls = shot
    (call,) = calls["pipeline"]
    # Mara's second reference does not fit: each character's first, then the scene.
    assert_same_pictures(call["image"], [images["astronaut"], images["chelsea"], images["coffee"]])
    assert result.parameters["input_pictures"] == ["Mara", "Tom", "location"]
    model_prompt = result.parameters["model_prompt"]
    assert model_prompt == (
        f"Picture 1 shows Mara, {MARA}. Picture 2 shows Tom, {TOM}. "
        "Picture 3 is the location: keep its place and light. Mara and Tom climb the stairs of the lighthouse"
    )
    assert call["prompt"] == model_prompt
    assert (call["height"], call["width"], call["num_inference_steps"]) == (HEIGHT, WIDTH, 2)
    assert result.image.size == (WIDTH, HEIGHT)
    # Guidance 1 runs no classifier-free guidance: the negative prompt is not passed, and the candidate says so.
    assert call["true_cfg_scale"] == 1.0
    assert call["negative_prompt"] is None
    assert result.parameters["negative_prompt"] == "blurry"
    assert len(result.notes) == 1 and "negative prompt was not used" in result.notes[0]


def test_the_prompt_names_the_pictures_with_the_pipelines_own_word(shot: tuple[PictureResult, Calls]) -> None:
    """The pipeline puts ``Picture N: <picture>`` before the prompt; the prompt must call them the same."""
    result, calls = shot
    (encoded,) = calls["processor"]  # one prompt encoded: no negative prompt without guidance
    (text,) = encoded["text"]
    assert text.count("<|image_pad|>") == 3
    labels = "".join(f"{PICTURE_WORD} {n}: <|vision_start|><|image_pad|><|vision_end|>" for n in (1, 2, 3))
    assert labels + result.parameters["model_prompt"] in text
    for n in (1, 2, 3):
        assert f"{PICTURE_WORD} {n} " in result.parameters["model_prompt"]
    assert len(encoded["images"]) == 3


def test_room_to_spare_goes_to_more_references_and_defaults_follow_the_model_card(
    backend: QwenImageEditBackend, images: dict[str, Image.Image], recorded: Calls
) -> None:
    request = shot_request(
        images,
        subjects=(Subject("Mara", MARA, (images["astronaut"], images["rocket"])),),
        scene=images["coffee"].convert("L"),  # a greyscale picture is given to the model as RGB
        steps=None,
        guidance=None,
    )
    result = backend.draw(request)
    (call,) = recorded["pipeline"]
    grey_scene = images["coffee"].convert("L").convert("RGB")
    assert_same_pictures(call["image"], [images["astronaut"], images["rocket"], grey_scene])
    assert result.parameters["input_pictures"] == ["Mara", "Mara", "location"]
    assert result.parameters["model_prompt"].startswith(
        f"Picture 1 shows Mara, {MARA}. Picture 2 shows Mara, {MARA}. Picture 3 is the location"
    )
    assert (call["num_inference_steps"], call["true_cfg_scale"]) == (40, 4.0)
    assert (result.parameters["steps"], result.parameters["guidance"]) == (40, 4.0)
    assert call["negative_prompt"] == " "  # true guidance needs a negative prompt: the model cards' empty one
    assert call["output_type"] == "pil"


@pytest.mark.parametrize(
    ("guidance", "negative_prompt", "given", "noted"),
    [
        (4.0, "  blurry, extra fingers ", "blurry, extra fingers", False),
        (1.0, "", None, False),
        (0.0, "blurry", None, True),
    ],
    ids=["guided", "unguided-without-negative", "unguided-with-negative"],
)
def test_the_negative_prompt_goes_with_guidance(
    backend: QwenImageEditBackend,
    images: dict[str, Image.Image],
    recorded: Calls,
    guidance: float,
    negative_prompt: str,
    given: str | None,
    noted: bool,
) -> None:
    result = backend.draw(portrait_request(images, guidance=guidance, negative_prompt=negative_prompt))
    (call,) = recorded["pipeline"]
    assert call["negative_prompt"] == given
    assert call["true_cfg_scale"] == guidance
    assert bool(result.notes) is noted


def test_a_picture_of_another_size_than_asked_is_an_error(
    backend: QwenImageEditBackend, images: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    record_calls(monkeypatch, run=False, drawn_size=(WIDTH - 16, HEIGHT))
    with pytest.raises(BackendError, match=r"drew 32x64 for a 48x64 request; .* steps of 16 px"):
        backend.draw(portrait_request(images))


# Progress and cancel.


def test_cancel_stops_the_draw(backend: QwenImageEditBackend, images: dict[str, Image.Image]) -> None:
    token = CancelToken()
    seen: list[tuple[str, int, int]] = []

    def progress(stage: str, step: int, total: int) -> None:
        seen.append((stage, step, total))
        if step == 1:
            token.cancel()

    with pytest.raises(GenerationCancelled, match="keyframe"):
        backend.draw(portrait_request(images, steps=3, guidance=1.0), progress=progress, cancel=token)
    assert seen == [("keyframe", 1, 3)]  # no step ran after the cancel


# Requests it cannot honour.


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 40}, "multiple of 16"),
        ({"height": 2064}, "up to 2048"),
        ({"prompt": "  "}, "prompt is empty"),
        ({"steps": 1}, "at least 2 steps"),
        ({"subjects": (Subject("Mara", MARA, ()),), "scene": None}, "draws from pictures"),
        ({"scene": Image.new("RGB", (640, 3))}, r"the location picture is 640x3; .* no longer than 200:1"),
        ({"view": "front"}, "one character's reference pictures"),  # a sheet view of two characters
    ],
    ids=["width-40", "height-2064", "empty-prompt", "one-step", "no-pictures", "long-scene", "view-of-two"],
)
def test_requests_it_cannot_honour_are_refused_before_loading(
    folder: Path, images: dict[str, Image.Image], fields: dict[str, Any], message: str
) -> None:
    fresh = new_backend(folder)
    with pytest.raises(RequestError, match=message):
        fresh.draw(shot_request(images, **fields))
    assert fresh.cache.loads == 0


def test_a_folder_of_another_pipeline_is_refused_before_loading(
    folder: Path, images: dict[str, Image.Image], tmp_path: Path
) -> None:
    """The first Qwen-Image-Edit has the same components but takes one picture only."""
    other = Path(shutil.copytree(folder, tmp_path / "qwen-image-edit-1"))
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps(index | {"_class_name": "QwenImageEditPipeline"}))
    fresh = new_backend(other)
    with pytest.raises(ModelError, match="holds a QwenImageEditPipeline, not QwenImageEditPlusPipeline"):
        fresh.draw(portrait_request(images))
    assert fresh.cache.loads == 0


# Quantization (bitsandbytes needs CUDA: the configuration is checked here, the load on a GPU machine).


def test_a_small_gpu_quantizes_the_transformer_and_text_encoder(folder: Path) -> None:
    """The plan for the real Qwen-Image-Edit on a 16 GiB card with 20 GiB of host RAM: NF4 on the two big
    components, each with its own library's config (Qwen2.5-VL is a transformers model), and the VAE left alone."""
    import diffusers
    import transformers

    plan = plan_backend("qwen-image-edit", vram=16 * 2**30, ram=20 * 2**30)
    assert plan.fits and plan.quantization() == dict.fromkeys(BIG_COMPONENTS, "nf4")
    settled = LoadSpec.create(
        folder, dtype="bfloat16", device="cuda", offload="model", quantization=plan.quantization()
    )
    mapping = quantization_config(settled, inspect_model_folder(folder)).quant_mapping
    assert set(mapping) == set(BIG_COMPONENTS)
    assert isinstance(mapping["transformer"], diffusers.BitsAndBytesConfig)
    assert isinstance(mapping["text_encoder"], transformers.BitsAndBytesConfig)
    for config in mapping.values():
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"


def test_an_int8_spec_names_both_big_components(folder: Path) -> None:
    import diffusers
    import transformers

    spec = LoadSpec.create(
        folder, dtype="bfloat16", device="cuda", offload="none", quantization=dict.fromkeys(BIG_COMPONENTS, "int8")
    )
    mapping = quantization_config(spec, inspect_model_folder(folder)).quant_mapping
    assert set(mapping) == set(BIG_COMPONENTS)
    assert isinstance(mapping["transformer"], diffusers.BitsAndBytesConfig)
    assert isinstance(mapping["text_encoder"], transformers.BitsAndBytesConfig)
    assert all(config.load_in_8bit and not config.load_in_4bit for config in mapping.values())


def test_bitsandbytes_on_the_cpu_is_refused_before_loading(folder: Path, images: dict[str, Image.Image]) -> None:
    fresh = new_backend(folder, quantization=dict.fromkeys(BIG_COMPONENTS, "nf4"))
    with pytest.raises(ModelError, match="needs a CUDA GPU; on the CPU use torchao-int8"):
        fresh.draw(portrait_request(images))
    assert fresh.cache.loads == 0


# The model folder.


def test_the_processor_loads_for_pictures_only(folder: Path) -> None:
    """No torchvision is needed: the processor has no video processor, and it marks pictures with the token the
    text encoder splices them in at."""
    from transformers import Qwen2VLProcessor

    processor = picture_processor(folder)
    assert isinstance(processor, Qwen2VLProcessor)
    assert type(processor).get_attributes() == ["image_processor", "tokenizer"]
    assert not hasattr(processor, "video_processor")
    encoder_config = json.loads((folder / "text_encoder" / "config.json").read_text())
    assert processor.image_token_id == encoder_config["image_token_id"]
    assert processor.tokenizer.convert_ids_to_tokens(processor.image_token_id) == "<|image_pad|>"


def test_the_tiny_tokenizer_drops_exactly_the_system_prompt(folder: Path) -> None:
    """The pipeline drops the first ``prompt_template_encode_start_idx`` tokens of the encoded prompt (its system
    part); the tiny tokenizer makes that exactly the system part, as the real one does."""
    from tiny_qwen_edit import prompt_template
    from transformers import Qwen2Tokenizer

    template, dropped = prompt_template()
    tokenizer = Qwen2Tokenizer.from_pretrained(folder / "tokenizer")
    system = template.split("{}")[0]
    assert len(tokenizer(system)["input_ids"]) == dropped
    assert tokenizer.convert_ids_to_tokens(tokenizer(system)["input_ids"])[-2:] == ["user", "Ċ"]


# CUDA (skipped without a GPU; run on a GPU machine).


@pytest.fixture
def cuda_backend(folder: Path, request: pytest.FixtureRequest) -> Iterator[QwenImageEditBackend]:
    import torch

    scheme = request.param
    drawer = new_backend(
        folder, dtype="bfloat16", device="cuda", offload="none", quantization=dict.fromkeys(BIG_COMPONENTS, scheme)
    )
    yield drawer
    drawer.unload()
    torch.cuda.empty_cache()


@pytest.mark.cuda
@pytest.mark.parametrize("cuda_backend", ["nf4", "int8"], indirect=True)
def test_cuda_bitsandbytes_draws(cuda_backend: QwenImageEditBackend, images: dict[str, Image.Image]) -> None:
    import bitsandbytes as bnb

    result = cuda_backend.draw(portrait_request(images))
    assert result.image.size == (WIDTH, HEIGHT)
    scheme = result.parameters["provenance"]["load_spec"]["quantization"]["transformer"]
    assert result.parameters["provenance"]["load_spec"]["quantization"] == dict.fromkeys(BIG_COMPONENTS, scheme)
    assert "cuda_allocated_bytes" in result.peak_memory
    pipe = cuda_backend._loaded().pipe  # from the cache: the draw loaded it
    quantized = {"nf4": bnb.nn.Linear4bit, "int8": bnb.nn.Linear8bitLt}[scheme]
    for component in (pipe.transformer, pipe.text_encoder):
        assert any(isinstance(module, quantized) for module in component.modules())
