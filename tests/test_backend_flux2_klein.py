"""The FLUX.2 [klein] keyframe backend on a tiny random model folder.

The folder is built in code and written with ``save_pretrained`` (``tests/tiny_flux2.py``), then loaded through
the registry and the studio's real loader (``Flux2KleinPipeline.from_pretrained``) on the CPU. The weights are
random, so only sizes, records, determinism, what the pipeline is given, and control flow mean anything. The
input pictures are real photographs from scikit-image (conftest's ``photos``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.backend import CancelToken, GenerationCancelled, RequestError
from pipelines.flux2_klein import BASE_GUIDANCE, BASE_STEPS, Flux2KleinBackend
from pipelines.keyframes import VIEW_PROMPTS, PictureRequest, PictureResult, Subject
from pipelines.loading import LoadSpec, PipelineCache, quantization_config
from pipelines.model_folder import ModelError
from pipelines.registry import create_picture_backend, plan_backend

WIDTH, HEIGHT = 96, 64
MARA = "a red-haired keeper in a green coat"
TOM = "a ginger cat with white paws"
ADA = "a pilot in a brown leather jacket"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_flux2 import build_flux2_klein_folder

    return build_flux2_klein_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> dict[str, Image.Image]:
    """astronaut 128x128, chelsea (a cat), coffee and rocket: 128 px wide, about 85 high."""
    loaded = {}
    for name, path in photos.items():
        with Image.open(path) as image:
            loaded[name] = image.convert("RGB")
    return loaded


def new_backend(folder: Path) -> Flux2KleinBackend:
    backend = create_picture_backend(
        "flux2-klein", spec=LoadSpec(source=str(folder), device="cpu"), cache=PipelineCache(capacity=1)
    )
    assert isinstance(backend, Flux2KleinBackend)
    return backend


@pytest.fixture(scope="module")
def backend(folder: Path) -> Flux2KleinBackend:
    return new_backend(folder)


def request_for(images: dict[str, Image.Image], **fields: Any) -> PictureRequest:
    """Mara (two references) at the lighthouse (a location picture), 96x64, 2 steps."""
    values: dict[str, Any] = {
        "prompt": "Mara climbs the stairs of the lighthouse",
        "width": WIDTH,
        "height": HEIGHT,
        "seed": 3,
        "steps": 2,
        "subjects": (Subject("Mara", MARA, (images["astronaut"], images["rocket"])),),
        "scene": images["coffee"],
        "scene_kind": "location",
    }
    return PictureRequest(**(values | fields))


@pytest.fixture(scope="module")
def candidate(backend: Flux2KleinBackend, images: dict[str, Image.Image]) -> PictureResult:
    return backend.draw(request_for(images))


@pytest.fixture
def pipeline_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every ``Flux2KleinPipeline`` call, the call itself still made."""
    from diffusers import Flux2KleinPipeline

    calls: list[dict[str, Any]] = []
    real_call = Flux2KleinPipeline.__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(Flux2KleinPipeline, "__call__", spy)
    return calls


def pixels(result: PictureResult) -> np.ndarray:
    return np.asarray(result.image)


# A candidate.


def test_a_candidate_is_drawn_at_the_requested_size(candidate: PictureResult) -> None:
    assert candidate.image.mode == "RGB"
    assert candidate.image.size == (WIDTH, HEIGHT)
    assert len(np.unique(pixels(candidate))) > 1, "the picture is one flat colour"
    parameters = candidate.parameters
    json.dumps(parameters)
    assert parameters["backend"] == "flux2-klein"
    assert (parameters["width"], parameters["height"], parameters["seed"]) == (WIDTH, HEIGHT, 3)
    assert parameters["steps"] == 2
    assert parameters["distilled"] is True  # the tiny folder says so, as the 4B release does
    assert parameters["guidance"] == 1.0
    assert set(candidate.timings) == {"load", "keyframe"}
    assert candidate.peak_memory["process_rss_bytes"] > 0
    assert candidate.notes == ()


def test_provenance_names_the_weights_folder_and_load_spec(candidate: PictureResult, folder: Path) -> None:
    provenance = candidate.parameters["provenance"]
    assert provenance["model_folder"] == str(folder.resolve())
    assert provenance["load_spec"]["source"] == str(folder)
    assert provenance["load_spec"]["device"] == "cpu"
    assert provenance["load_spec"]["dtype"] == "float32"
    assert provenance["load_spec"]["offload"] == "none"
    assert provenance["load_spec"]["quantization"] == {}
    assert "no CUDA GPU" in provenance["profile_reason"]
    files = provenance["model_files"]
    assert {"transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"} <= set(files)
    assert all(name.endswith(".safetensors") for name in files)
    assert all(value.startswith("size:") for value in files.values())
    assert "diffusers" in provenance["libraries"]


def test_the_same_seed_draws_the_same_picture_another_seed_another(
    backend: Flux2KleinBackend, candidate: PictureResult, images: dict[str, Image.Image]
) -> None:
    again = backend.draw(request_for(images))
    np.testing.assert_array_equal(pixels(again), pixels(candidate))
    other = backend.draw(request_for(images, seed=4))
    assert not np.array_equal(pixels(other), pixels(candidate))


def test_other_input_pictures_draw_another_picture(
    backend: Flux2KleinBackend, candidate: PictureResult, images: dict[str, Image.Image]
) -> None:
    result = backend.draw(request_for(images, scene=images["chelsea"]))
    assert not np.array_equal(pixels(result), pixels(candidate)), "the scene picture changed nothing"


# What the model is given.


def test_at_most_four_pictures_characters_first_then_the_scene(
    backend: Flux2KleinBackend, images: dict[str, Image.Image], pipeline_calls: list[dict[str, Any]]
) -> None:
    mara = Subject("Mara", MARA, (images["astronaut"], images["rocket"]))
    tom = Subject("Tom", TOM, (images["chelsea"],))
    ada = Subject("Ada", ADA, (images["rocket"], images["astronaut"]))
    request = request_for(images, subjects=(mara, tom, ada), steps=1, prompt="Mara and Ada feed Tom")

    result = backend.draw(request)

    (call,) = pipeline_calls
    given = call["image"]
    assert len(given) == 4
    expected = [images["astronaut"], images["chelsea"], images["rocket"], images["coffee"]]
    for index, (picture, wanted) in enumerate(zip(given, expected, strict=True)):
        assert picture.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(picture), np.asarray(wanted), err_msg=f"picture {index + 1}")
    assert result.parameters["input_pictures"] == ["Mara", "Tom", "Ada", "location"]
    model_prompt = result.parameters["model_prompt"]
    assert call["prompt"] == model_prompt
    assert model_prompt == (
        f"Image 1 shows Mara, {MARA}. Image 2 shows Tom, {TOM}. Image 3 shows Ada, {ADA}. "
        "Image 4 is the location: keep its place and light. Mara and Ada feed Tom"
    )
    assert (call["height"], call["width"]) == (HEIGHT, WIDTH)
    assert call["num_inference_steps"] == 1
    assert call["guidance_scale"] == 1.0


def test_room_to_spare_goes_to_more_references(
    backend: Flux2KleinBackend, images: dict[str, Image.Image], pipeline_calls: list[dict[str, Any]]
) -> None:
    result = backend.draw(request_for(images, steps=1))
    assert result.parameters["input_pictures"] == ["Mara", "Mara", "location"]
    assert len(pipeline_calls[0]["image"]) == 3
    assert result.parameters["model_prompt"].startswith(f"Image 1 shows Mara, {MARA}. Image 2 shows Mara, {MARA}. ")


def test_a_character_sheet_view(
    backend: Flux2KleinBackend, images: dict[str, Image.Image], pipeline_calls: list[dict[str, Any]]
) -> None:
    request = request_for(images, scene=None, scene_kind="", view="profile", prompt="Mara", steps=1)
    result = backend.draw(request)
    assert result.image.size == (WIDTH, HEIGHT)
    assert result.parameters["view"] == "profile"
    assert result.parameters["input_pictures"] == ["Mara", "Mara"]
    assert VIEW_PROMPTS["profile"].capitalize() in pipeline_calls[0]["prompt"]


def test_negative_prompt_and_guidance_the_model_cannot_use_are_noted(
    backend: Flux2KleinBackend, images: dict[str, Image.Image], pipeline_calls: list[dict[str, Any]]
) -> None:
    result = backend.draw(request_for(images, steps=1, negative_prompt="blurry", guidance=3.5))
    assert pipeline_calls[0]["guidance_scale"] == 1.0
    assert "negative_prompt" not in pipeline_calls[0]
    assert result.parameters["guidance"] == 1.0
    assert result.parameters["negative_prompt"] == "blurry"  # what was asked, beside what was used
    negative, guidance = sorted(result.notes, key=lambda note: "negative" not in note)
    assert "no negative prompt" in negative and "'blurry'" in negative
    assert "step-distilled" in guidance and "3.5" in guidance


# Progress, cancel, caching.


def test_progress_reports_every_step(backend: Flux2KleinBackend, images: dict[str, Image.Image]) -> None:
    seen: list[tuple[str, int, int]] = []
    backend.draw(request_for(images, steps=3), progress=lambda *report: seen.append(report))
    assert seen == [("keyframe", 1, 3), ("keyframe", 2, 3), ("keyframe", 3, 3)]


def test_cancel_stops_the_draw(backend: Flux2KleinBackend, images: dict[str, Image.Image]) -> None:
    token = CancelToken()
    seen: list[tuple[str, int, int]] = []

    def progress(stage: str, step: int, total: int) -> None:
        seen.append((stage, step, total))
        if step == 1:
            token.cancel()

    with pytest.raises(GenerationCancelled, match="keyframe"):
        backend.draw(request_for(images, steps=4), progress=progress, cancel=token)
    assert seen == [("keyframe", 1, 4)]  # no step ran after the cancel


def test_the_pipeline_loads_once_for_two_candidates(folder: Path, images: dict[str, Image.Image]) -> None:
    fresh = new_backend(folder)
    first = fresh.draw(request_for(images, steps=1))
    second = fresh.draw(request_for(images, steps=1, seed=9, scene=None, scene_kind=""))
    assert fresh.cache.loads == 1
    assert len(fresh.cache) == 1
    assert first.image.size == second.image.size == (WIDTH, HEIGHT)
    fresh.unload()
    assert len(fresh.cache) == 0


def test_defaults_follow_whether_the_folder_is_distilled(
    backend: Flux2KleinBackend, folder: Path, images: dict[str, Image.Image], tmp_path: Path
) -> None:
    """The 4B release (distilled) takes 4 steps without guidance; an undistilled base folder 50 with guidance 4."""

    def first_report(drawer: Flux2KleinBackend) -> tuple[str, int, int]:
        token = CancelToken()
        seen: list[tuple[str, int, int]] = []

        def progress(stage: str, step: int, total: int) -> None:
            seen.append((stage, step, total))
            token.cancel()

        with pytest.raises(GenerationCancelled):
            drawer.draw(request_for(images, steps=None), progress=progress, cancel=token)
        return seen[0]

    assert first_report(backend) == ("keyframe", 1, 4)

    base = Path(shutil.copytree(folder, tmp_path / "flux2-klein-base"))
    index = json.loads((base / "model_index.json").read_text())
    (base / "model_index.json").write_text(json.dumps(index | {"is_distilled": False}))
    base_backend = new_backend(base)
    assert first_report(base_backend) == ("keyframe", 1, BASE_STEPS)
    result = base_backend.draw(request_for(images, steps=1))
    assert result.parameters["distilled"] is False
    assert result.parameters["guidance"] == BASE_GUIDANCE
    assert result.notes == ()


# Requests it cannot honour.


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 72}, "multiple of 16"),
        ({"height": 2064}, "up to 2048"),
        ({"prompt": "  "}, "prompt is empty"),
        ({"subjects": (), "scene": None}, "draws from pictures"),
        ({"view": "back"}, "views are"),
        ({"small_reference": True}, "Mara's reference picture is 48x48; .* at least 64 px"),
        ({"scene": Image.new("RGB", (640, 64))}, "the location picture is 640x64; .* no longer than 8:1"),
    ],
    ids=["width-72", "height-2064", "empty-prompt", "no-pictures", "unknown-view", "small-reference", "long-scene"],
)
def test_requests_it_cannot_honour_are_refused_before_loading(
    folder: Path, images: dict[str, Image.Image], fields: dict[str, Any], message: str
) -> None:
    if fields.pop("small_reference", False):
        fields["subjects"] = (Subject("Mara", MARA, (Image.new("RGB", (48, 48)),)),)
    fresh = new_backend(folder)
    with pytest.raises(RequestError, match=message):
        fresh.draw(request_for(images, **fields))
    assert fresh.cache.loads == 0


def test_a_folder_of_another_pipeline_is_refused_before_loading(
    folder: Path, images: dict[str, Image.Image], tmp_path: Path
) -> None:
    other = Path(shutil.copytree(folder, tmp_path / "flux2-dev"))
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps(index | {"_class_name": "Flux2Pipeline"}))
    fresh = new_backend(other)
    with pytest.raises(ModelError, match="holds a Flux2Pipeline, not Flux2KleinPipeline"):
        fresh.draw(request_for(images))
    assert fresh.cache.loads == 0


# Quantization (bitsandbytes needs CUDA: the configuration is checked here, the load on a GPU machine).


def test_a_small_gpu_quantizes_the_transformer_and_text_encoder(folder: Path) -> None:
    """The plan for the real FLUX.2 klein on an 8 GiB card with 8 GiB of host RAM: NF4 on the two big
    components, with each library's config (the Qwen3 encoder is a transformers model), and the VAE left alone."""
    import diffusers
    import transformers

    from pipelines.model_folder import inspect_model_folder

    plan = plan_backend("flux2-klein", vram=8 * 2**30, ram=8 * 2**30)
    assert plan.fits and plan.quantization() == {"transformer": "nf4", "text_encoder": "nf4"}
    settled = LoadSpec.create(
        folder, dtype="bfloat16", device="cuda", offload="model", quantization=plan.quantization()
    )
    mapping = quantization_config(settled, inspect_model_folder(folder)).quant_mapping
    assert set(mapping) == {"transformer", "text_encoder"}
    assert isinstance(mapping["transformer"], diffusers.BitsAndBytesConfig)
    assert isinstance(mapping["text_encoder"], transformers.BitsAndBytesConfig)
    for config in mapping.values():
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"


def test_an_int8_spec_names_both_big_components(folder: Path) -> None:
    import diffusers
    import transformers

    from pipelines.model_folder import inspect_model_folder

    spec = LoadSpec.create(
        folder,
        dtype="bfloat16",
        device="cuda",
        offload="none",
        quantization=dict.fromkeys(("transformer", "text_encoder"), "int8"),
    )
    mapping = quantization_config(spec, inspect_model_folder(folder)).quant_mapping
    assert isinstance(mapping["transformer"], diffusers.BitsAndBytesConfig)
    assert isinstance(mapping["text_encoder"], transformers.BitsAndBytesConfig)
    assert all(config.load_in_8bit and not config.load_in_4bit for config in mapping.values())


@pytest.mark.cuda
@pytest.mark.parametrize("scheme", ["nf4", "int8"])
def test_cuda_bitsandbytes_draws(folder: Path, images: dict[str, Image.Image], scheme: str) -> None:
    import bitsandbytes as bnb
    import torch

    spec = LoadSpec.create(
        folder,
        dtype="bfloat16",
        device="cuda",
        offload="none",
        quantization=dict.fromkeys(("transformer", "text_encoder"), scheme),
    )
    drawer = create_picture_backend("flux2-klein", spec=spec, cache=PipelineCache())
    assert isinstance(drawer, Flux2KleinBackend)
    try:
        result = drawer.draw(request_for(images))
        assert result.image.size == (WIDTH, HEIGHT)
        assert result.parameters["provenance"]["load_spec"]["quantization"] == {
            "text_encoder": scheme,
            "transformer": scheme,
        }
        pipe = drawer._loaded().pipe  # from the cache: the draw loaded it
        quantized = {"nf4": bnb.nn.Linear4bit, "int8": bnb.nn.Linear8bitLt}[scheme]
        for component in (pipe.transformer, pipe.text_encoder):
            assert any(isinstance(module, quantized) for module in component.modules())
    finally:
        drawer.unload()
        torch.cuda.empty_cache()
