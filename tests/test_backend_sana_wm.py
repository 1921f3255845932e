"""SANA-WM backend on a tiny random model folder: stage 1, the LTX-2 refiner, validation, seeds, cancel, caching.

Everything runs the real loading code (``SanaWMPipeline.from_pretrained`` from a folder written by
``save_pretrained``) on CPU. The weights are random, so only shapes, records, determinism and control flow mean
anything. One backend (one :class:`PipelineCache`) is shared by the module so the pipeline loads once.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pipelines.sana_wm as sana_wm_module
from pipelines.backend import (
    CancelToken,
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    RefinerSettings,
    RequestError,
)
from pipelines.loading import LoadSpec, PipelineCache
from pipelines.sana_wm import SanaWMBackend

SIZE = 64
FPS = 8


@pytest.fixture(scope="module")
def keyframe(photos: dict[str, Path]) -> Image.Image:
    """A real photograph (scikit-image's astronaut) as the shot's first frame."""
    with Image.open(photos["astronaut"]) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def backend(sana_wm_folder: Path) -> SanaWMBackend:
    return SanaWMBackend(LoadSpec(source=str(sana_wm_folder)), cache=PipelineCache())


def request_for(keyframe: Image.Image | None, **fields: object) -> GenerationRequest:
    values: dict[str, object] = {
        "prompt": "an astronaut in a white suit, studio portrait",
        "width": SIZE,
        "height": SIZE,
        "fps": FPS,
        "num_frames": 9,
        "steps": 2,
        "keyframe": keyframe,
        "camera": "dolly-in",
    }
    values.update(fields)
    return GenerationRequest(**values)  # type: ignore[arg-type]


def quick(keyframe: Image.Image | None, **fields: object) -> GenerationRequest:
    """A cheaper request (32x32, one step, no classifier-free guidance) where the size does not matter."""
    return request_for(keyframe, **({"width": 32, "height": 32, "steps": 1, "guidance": 1.0} | fields))


@pytest.fixture(scope="module")
def stage1_take(backend: SanaWMBackend, keyframe: Image.Image) -> GenerationResult:
    return backend.generate(request_for(keyframe, seed=7))


# Stage 1.


def test_stage1_frames_parameters_and_provenance(
    stage1_take: GenerationResult, sana_wm_folder: Path, keyframe: Image.Image
) -> None:
    result = stage1_take
    assert result.frames.dtype == np.uint8
    assert result.frames.shape == (9, SIZE, SIZE, 3)
    assert result.num_frames == 9
    assert result.fps == FPS
    assert len(np.unique(result.frames)) > 1, "the frames are one constant colour"
    assert result.notes == ()

    parameters = result.parameters
    json.dumps(parameters)  # a take's record is plain JSON
    assert parameters["backend"] == "sana-wm"
    assert parameters["action"] == "w-8"
    assert len(parameters["intrinsics"]) == 4
    assert all(isinstance(value, float) for value in parameters["intrinsics"])
    fx, fy, cx, cy = parameters["intrinsics"]
    assert fx == fy > 0
    assert (cx, cy) == (keyframe.width / 2, keyframe.height / 2)
    assert parameters["steps"] == 2
    assert parameters["guidance"] == SanaWMBackend.default_guidance
    assert parameters["seed"] == 7
    assert parameters["num_frames"] == 9
    assert parameters["stage1_frames"] == 9
    assert parameters["refiner"]["enabled"] is False

    provenance = parameters["provenance"]
    assert provenance["load_spec"]["dtype"] == "float32"
    assert provenance["load_spec"]["device"] == "cpu"
    assert provenance["load_spec"]["offload"] == "none"
    assert provenance["load_spec"]["source"] == str(sana_wm_folder)
    assert provenance["model_folder"] == str(sana_wm_folder.resolve())
    assert set(provenance["model_files"]) == {
        "text_encoder/model.safetensors",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }
    for name, fingerprint in provenance["model_files"].items():
        assert fingerprint.startswith(f"size:{(sana_wm_folder / name).stat().st_size} header:")
    assert provenance["libraries"]["torch"] == metadata.version("torch")
    assert provenance["libraries"]["diffusers"] == metadata.version("diffusers")
    assert provenance["device"].startswith("cpu")

    assert "backbone" in result.timings
    assert "refiner" not in result.timings
    assert all(seconds >= 0 for seconds in result.timings.values())
    assert result.peak_memory["process_rss_bytes"] > 0


def test_preset_frame_count_is_snapped_with_a_note(backend: SanaWMBackend, keyframe: Image.Image) -> None:
    result = backend.generate(quick(keyframe, num_frames=10))
    assert result.frames.shape == (17, 32, 32, 3)
    assert result.parameters["num_frames"] == 17
    assert result.parameters["action"] == "w-16"
    assert len(result.notes) == 1
    assert "10 frames snapped to 17" in result.notes[0]


def test_explicit_camera_path_is_followed(backend: SanaWMBackend, keyframe: Image.Image) -> None:
    result = backend.generate(quick(keyframe, camera="w-8,jw-8", num_frames=17))
    assert result.frames.shape == (17, 32, 32, 3)
    assert result.parameters["action"] == "w-8,jw-8"
    assert result.parameters["camera"] == "w-8,jw-8"
    assert result.notes == ()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"camera": "w-12", "num_frames": 13}, "multiple of 8 steps"),
        ({"camera": "w-8", "num_frames": 17}, "is 8 steps but the shot has 17 frames"),
        ({"last_frame": "photo"}, "last frame"),
        ({"references": "photo"}, "reference images"),
        ({"width": 48}, "multiple of 32"),
        ({"keyframe": None}, "keyframe"),
        ({"camera": "q-8"}, "unknown keys q"),
    ],
    ids=[
        "path-not-multiple-of-8",
        "path-length-mismatch",
        "last-frame",
        "references",
        "width-48",
        "no-keyframe",
        "bad-camera",
    ],
)
def test_requests_it_cannot_honour_are_refused_before_loading(
    sana_wm_folder: Path, keyframe: Image.Image, fields: dict[str, object], message: str
) -> None:
    photo_fields = {"keyframe": keyframe, "last_frame": keyframe, "references": (keyframe,)}
    fields = {"keyframe": keyframe} | {
        name: photo_fields[name] if value == "photo" else value for name, value in fields.items()
    }
    cache = PipelineCache()
    fresh = SanaWMBackend(LoadSpec(source=str(sana_wm_folder)), cache=cache)
    with pytest.raises(RequestError, match=message):
        fresh.generate(request_for(**fields))  # type: ignore[arg-type]
    assert cache.loads == 0


# Stage 2: the LTX-2 refiner.


@pytest.fixture(scope="module")
def refined_takes(
    backend: SanaWMBackend, keyframe: Image.Image
) -> tuple[GenerationResult, GenerationResult, list[str]]:
    """Two refined takes of one request, and the classes ``pipelines.sana_wm`` loaded for them (the refiner)."""
    refiner_loads: list[str] = []
    real_load = sana_wm_module.load_pipeline

    def counting_load(pipeline_class: type, spec: LoadSpec, **components: object) -> object:
        refiner_loads.append(pipeline_class.__name__)
        return real_load(pipeline_class, spec, **components)

    request = quick(keyframe, num_frames=17, steps=2, refiner=RefinerSettings(enabled=True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sana_wm_module, "load_pipeline", counting_load)
        first = backend.generate(request)
        second = backend.generate(request)
    return first, second, refiner_loads


def test_refiner_drops_the_anchor_frame_and_loads_once(
    backend: SanaWMBackend, refined_takes: tuple[GenerationResult, GenerationResult, list[str]]
) -> None:
    first, second, refiner_loads = refined_takes
    for result in (first, second):
        assert result.frames.dtype == np.uint8
        assert result.frames.shape == (16, 32, 32, 3)
        assert result.parameters["num_frames"] == 16
        assert result.parameters["stage1_frames"] == 17
        assert result.parameters["refiner"]["enabled"] is True
        assert any("anchor frame" in note for note in result.notes)
        assert isinstance(result.latents, torch.Tensor)
        assert result.latents.ndim == 5
        assert result.latents.shape[2] == 3  # (17 - 1) / 8 + 1 latent frames
        assert {"backbone", "refiner"} <= set(result.timings)
        refiner_spec = result.parameters["provenance"]["refiner"]["load_spec"]
        assert "auto" not in (refiner_spec["device"], refiner_spec["dtype"], refiner_spec["offload"]), refiner_spec
    assert len(np.unique(first.frames)) > 1
    np.testing.assert_array_equal(first.frames, second.frames)
    # The refiner rides on the cached backbone: one backbone load, one refiner load for both takes.
    assert backend.cache.loads == 1
    assert refiner_loads == ["SanaWMLTX2Refiner"]


def test_without_the_refiner_folder_the_refiner_is_refused_and_stage1_still_works(
    sana_wm_folder: Path, tmp_path: Path, keyframe: Image.Image
) -> None:
    folder = tmp_path / "sana-wm"
    shutil.copytree(sana_wm_folder, folder)
    shutil.rmtree(folder / "refiner")
    fresh = SanaWMBackend(LoadSpec(source=str(folder)), cache=PipelineCache())
    with pytest.raises(RequestError, match="refiner") as caught:
        fresh.generate(quick(keyframe, refiner=RefinerSettings(enabled=True)))
    assert "refiner is not installed" in str(caught.value)
    result = fresh.generate(quick(keyframe))
    assert result.frames.shape == (9, 32, 32, 3)
    assert "refiner" not in result.timings


# Seeds, cancel, caching.


def test_same_seed_same_frames_other_seed_other_frames(
    backend: SanaWMBackend, keyframe: Image.Image, stage1_take: GenerationResult
) -> None:
    again = backend.generate(request_for(keyframe, seed=7))
    np.testing.assert_array_equal(again.frames, stage1_take.frames)
    other = backend.generate(request_for(keyframe, seed=8))
    assert other.frames.shape == stage1_take.frames.shape
    assert not np.array_equal(other.frames, stage1_take.frames)


def test_cancel_stops_the_backbone_early_and_the_next_take_runs_in_full(
    backend: SanaWMBackend, keyframe: Image.Image
) -> None:
    token = CancelToken()
    seen: list[tuple[str, int, int]] = []

    def progress(stage: str, step: int, total: int) -> None:
        seen.append((stage, step, total))
        if stage == "backbone" and step == 1:
            token.cancel()

    with pytest.raises(GenerationCancelled, match="backbone"):
        backend.generate(quick(keyframe, steps=4), progress=progress, cancel=token)
    backbone_steps = [step for stage, step, _ in seen if stage == "backbone"]
    assert backbone_steps == [1]
    assert all(total == 4 for _, _, total in seen)

    # The cached pipeline is not left interrupted: a following take runs every step.
    seen.clear()
    backend.generate(quick(keyframe, steps=2), progress=lambda *args: seen.append(args))
    assert [step for stage, step, _ in seen if stage == "backbone"] == [1, 2]


def test_pipeline_loads_once_per_spec_and_unload_empties_the_cache(
    sana_wm_folder: Path, keyframe: Image.Image
) -> None:
    cache = PipelineCache()
    fresh = SanaWMBackend(LoadSpec(source=str(sana_wm_folder)), cache=cache)
    fresh.generate(quick(keyframe))
    fresh.generate(quick(keyframe, seed=1))
    assert cache.loads == 1
    fresh.unload()
    assert cache.unload() == 0  # nothing left to drop
    fresh.generate(quick(keyframe))
    assert cache.loads == 2


# Regressions: each of these was a bug once.


def test_an_explicit_load_spec_still_records_the_model_files(
    backend: SanaWMBackend, sana_wm_folder: Path, keyframe: Image.Image
) -> None:
    # The same settled spec as the module backend's, so the cache serves the already loaded pipeline.
    explicit = LoadSpec(source=str(sana_wm_folder), dtype="float32", device="cpu", offload="none")
    settled = SanaWMBackend(explicit, cache=backend.cache)
    result = settled.generate(quick(keyframe))
    provenance = result.parameters["provenance"]
    assert provenance["model_folder"] == str(sana_wm_folder.resolve())
    assert "transformer/diffusion_pytorch_model.safetensors" in provenance["model_files"]


def test_a_refined_take_records_the_refiner_weights(
    refined_takes: tuple[GenerationResult, GenerationResult, list[str]], sana_wm_folder: Path
) -> None:
    result = refined_takes[0]
    assert str(sana_wm_folder.resolve() / "refiner") in json.dumps(result.parameters["provenance"])


def test_a_missing_refiner_is_refused_by_check_request(
    sana_wm_folder: Path, tmp_path: Path, keyframe: Image.Image
) -> None:
    folder = tmp_path / "sana-wm"
    shutil.copytree(sana_wm_folder, folder)
    shutil.rmtree(folder / "refiner")
    cache = PipelineCache()
    fresh = SanaWMBackend(LoadSpec(source=str(folder)), cache=cache)
    with pytest.raises(RequestError, match="refiner"):
        fresh.generate(request_for(keyframe, refiner=RefinerSettings(enabled=True)))
    assert cache.loads == 0
