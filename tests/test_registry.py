"""pipelines.registry: which backends can run, where their weights are found, and creating them.

Weights are the tiny random model folders conftest saves with ``save_pretrained``, copied into a models
directory or named by ``CONTINUITY_MODEL_<NAME>``. The environment is cleaned of the studio's variables and the
Hugging Face cache is an empty temp folder, offline, so nothing on this machine or the network leaks in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.cli import main
from pipelines.backend import BackendError, GenerationRequest
from pipelines.keyframes import PictureCapabilities
from pipelines.loading import LoadSpec, PipelineCache
from pipelines.model_folder import ModelError
from pipelines.registry import (
    MODELS_ENV,
    backend_names,
    create_backend,
    describe,
    env_name,
    list_backends,
    model_source,
    picture_backend_names,
    weights_source,
)
from projects.studio import Studio

REPO = Path(__file__).parents[1]
ORDER = ["animatic", "sana-wm", "wan-i2v", "wan-vace"]
PICTURE_ORDER = ["compose", "qwen-image-edit", "flux2-klein"]
DIFFUSION = ORDER[1:]
CAPABILITY_KEYS = {
    "image_to_video",
    "text_only",
    "reference_images",
    "last_frame",
    "camera_control",
    "refiner",
    "max_frames",
    "frame_stride",
    "size_multiple",
    "max_side",
    "needs_gpu",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, hf_offline: Path) -> None:
    for name in list(os.environ):
        if name.startswith("CONTINUITY_MODEL"):  # CONTINUITY_MODEL_<NAME> and CONTINUITY_MODELS
            monkeypatch.delenv(name)


@pytest.fixture
def models(tmp_path: Path, clean_env: None) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def keyframe() -> Image.Image:
    y, x = np.mgrid[0:64, 0:64]
    return Image.fromarray(np.stack([x * 4, y * 4, 255 - x * 2], axis=-1).clip(0, 255).astype(np.uint8))


def copy_model(source: Path, target: Path) -> Path:
    return Path(shutil.copytree(source, target, ignore=shutil.ignore_patterns("refiner")))


def by_name(models_dir: Path | None) -> dict[str, object]:
    return {info.name: info for info in list_backends(models_dir)}


# Listing


def test_list_backends_without_weights(models: Path) -> None:
    infos = list_backends(models)

    assert [info.name for info in infos] == ORDER + PICTURE_ORDER
    assert backend_names() == ORDER and picture_backend_names() == PICTURE_ORDER
    assert [info.kind for info in infos] == ["video"] * 4 + ["keyframe"] * 3
    for embedded in (infos[0], infos[4]):  # animatic and compose: no weights, no GPU
        assert embedded.available
        assert embedded.source is None
        assert not embedded.capabilities.needs_gpu
    for info in infos[1:4] + infos[5:]:
        assert not info.available, info.name
        assert info.source is None
        assert info.capabilities.needs_gpu
        assert f"no {info.label} weights configured" in info.reason
        assert env_name(info.name) in info.reason
        assert str(models / info.name) in info.reason
    assert env_name("sana-wm") == "CONTINUITY_MODEL_SANA_WM"
    assert env_name("wan-i2v") == "CONTINUITY_MODEL_WAN_I2V"


@pytest.mark.usefixtures("hf_offline")
def test_list_backends_with_an_explicit_empty_env_and_no_models_dir() -> None:
    infos = {info.name: info for info in list_backends(None, {})}
    assert infos["animatic"].available
    for name in DIFFUSION:
        assert not infos[name].available
        assert f"<models dir>/{name}" in infos[name].reason


def test_env_variable_makes_sana_wm_available(
    models: Path, sana_wm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTINUITY_MODEL_SANA_WM", str(sana_wm_folder))

    infos = by_name(models)

    sana = infos["sana-wm"]
    assert sana.available
    assert sana.source == str(sana_wm_folder)
    assert "ready on the CPU" in sana.reason  # this machine has no CUDA GPU
    assert "no CUDA GPU" in sana.reason
    assert str(sana_wm_folder) in sana.reason
    assert not infos["wan-i2v"].available
    assert not infos["wan-vace"].available


def test_env_variable_wins_over_the_models_dir(
    models: Path, sana_wm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_model(sana_wm_folder, models / "sana-wm")
    assert model_source("sana-wm", models) == str(models / "sana-wm")

    monkeypatch.setenv("CONTINUITY_MODEL_SANA_WM", str(sana_wm_folder))
    assert model_source("sana-wm", models) == str(sana_wm_folder)
    # A mapping given explicitly is used instead of os.environ.
    assert model_source("sana-wm", models, {}) == str(models / "sana-wm")


def test_models_dir_makes_wan_i2v_available(models: Path, wan_folders: dict[str, Path]) -> None:
    shutil.copytree(wan_folders["wan-i2v"], models / "wan-i2v")

    infos = by_name(models)

    assert infos["wan-i2v"].available
    assert infos["wan-i2v"].source == str(models / "wan-i2v")
    assert infos["wan-i2v"].reason.startswith("ready")
    assert not infos["wan-vace"].available
    assert not infos["sana-wm"].available


def test_models_env_points_at_another_models_dir(
    models: Path, tmp_path: Path, wan_folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(wan_folders["wan-vace"], elsewhere / "wan-vace")
    monkeypatch.setenv(MODELS_ENV, str(elsewhere))

    info = describe("wan-vace", models)

    assert info.available
    assert info.source == str(elsewhere / "wan-vace")


def test_unavailable_reason_names_the_models_dir_from_the_env(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv(MODELS_ENV, str(elsewhere))

    info = describe("sana-wm", models)

    assert not info.available
    assert str(elsewhere / "sana-wm") in info.reason


def test_damaged_weights_are_unavailable_with_the_damage(models: Path, sana_wm_folder: Path) -> None:
    folder = copy_model(sana_wm_folder, models / "sana-wm")
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    info = describe("sana-wm", models)

    assert not info.available
    assert info.source == str(folder)
    assert f"{weights} is damaged (truncated" in info.reason
    assert "CONTINUITY_MODEL_SANA_WM" in info.reason  # and what to do about it


def test_pickled_weights_are_unavailable(models: Path, wan_folders: dict[str, Path]) -> None:
    folder = Path(shutil.copytree(wan_folders["wan-i2v"], models / "wan-i2v"))
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, folder / "transformer" / "diffusion_pytorch_model.bin")

    info = describe("wan-i2v", models)

    assert not info.available
    assert "pickled" in info.reason


def test_missing_source_folder_is_unavailable(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTINUITY_MODEL_WAN_I2V", str(tmp_path / "not-there"))

    info = describe("wan-i2v", models)

    assert not info.available
    assert info.source == str(tmp_path / "not-there")
    assert "model folder not found" in info.reason


def test_default_hub_id_found_in_the_local_cache(models: Path, hf_offline: Path, sana_wm_folder: Path) -> None:
    """The third rule: the backend's default hub id, when ``hf download`` has put it in the cache."""
    from pipelines.sana_wm import SanaWMBackend

    repo = hf_offline / ("models--" + SanaWMBackend.default_source.replace("/", "--"))
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    copy_model(sana_wm_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)

    info = describe("sana-wm", models)

    assert info.available
    assert info.source == SanaWMBackend.default_source
    assert not describe("wan-i2v", models).available  # its default is not in the cache


def test_hub_id_in_env_not_in_cache(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTINUITY_MODEL_SANA_WM", "some-org/some-model")

    info = describe("sana-wm", models)

    assert not info.available
    assert info.source == "some-org/some-model"
    assert "not in the Hugging Face cache" in info.reason
    assert "hf download some-org/some-model" in info.reason


# Creating backends


def test_create_sana_wm_and_generate(sana_wm_folder: Path, keyframe: Image.Image, clean_env: None) -> None:
    from pipelines.sana_wm import SanaWMBackend

    cache = PipelineCache()
    backend = create_backend("sana-wm", source=str(sana_wm_folder), cache=cache)
    assert isinstance(backend, SanaWMBackend)
    assert backend.spec == LoadSpec(source=str(sana_wm_folder))

    steps: list[tuple[str, int, int]] = []
    request = GenerationRequest(
        prompt="a keeper climbs the lighthouse stairs",
        width=64,
        height=64,
        fps=16,
        num_frames=9,
        seed=3,
        keyframe=keyframe,
        camera="static",
        steps=2,
    )
    try:
        result = backend.generate(request, progress=lambda stage, step, total: steps.append((stage, step, total)))
    finally:
        backend.unload()

    assert result.frames.shape == (9, 64, 64, 3)
    assert result.frames.dtype == np.uint8
    assert result.fps == 16
    assert steps == [("backbone", 1, 2), ("backbone", 2, 2)]
    assert cache.loads == 1
    assert ("sana-wm", backend.settled) not in cache  # unloaded
    assert result.parameters["backend"] == "sana-wm"
    assert result.parameters["steps"] == 2
    load_spec = result.parameters["provenance"]["load_spec"]
    assert (load_spec["device"], load_spec["dtype"], load_spec["offload"]) == ("cpu", "float32", "none")
    assert "no CUDA GPU" in result.parameters["provenance"]["profile_reason"]


def test_create_animatic_needs_no_weights(clean_env: None) -> None:
    from pipelines.animatic import AnimaticBackend

    assert isinstance(create_backend("animatic"), AnimaticBackend)


def test_create_unknown_backend() -> None:
    with pytest.raises(BackendError, match="unknown backend 'sora'") as caught:
        create_backend("sora")
    for name in ORDER:
        assert name in str(caught.value)


@pytest.mark.parametrize("name", DIFFUSION)
def test_create_backend_without_weights(models: Path, name: str) -> None:
    with pytest.raises(BackendError) as caught:
        create_backend(name, models_dir=models)
    message = str(caught.value)
    assert "weights configured" in message
    assert env_name(name) in message
    assert str(models / name) in message


def test_create_backend_with_damaged_weights_fails_on_the_first_take(
    models: Path, sana_wm_folder: Path, keyframe: Image.Image
) -> None:
    folder = copy_model(sana_wm_folder, models / "sana-wm")
    (folder / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 4)
    backend = create_backend("sana-wm", models_dir=models, cache=PipelineCache())
    request = GenerationRequest(prompt="a cat", width=64, height=64, fps=16, num_frames=9, keyframe=keyframe, steps=2)

    with pytest.raises(ModelError, match="damaged"):
        backend.generate(request)


def test_create_wan_i2v_picks_the_refiner_from_the_models_dir(
    models: Path, wan_folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipelines.wan import WanI2VBackend

    shutil.copytree(wan_folders["wan-i2v"], models / "wan-i2v")
    without = create_backend("wan-i2v", models_dir=models)
    assert isinstance(without, WanI2VBackend)
    assert without.spec == LoadSpec(source=str(models / "wan-i2v"))
    assert without.refiner_spec is None  # no wan-refiner folder and its default hub id is not cached

    shutil.copytree(wan_folders["wan-refiner"], models / "wan-refiner")
    backend = create_backend("wan-i2v", models_dir=models)
    assert backend.refiner_spec == LoadSpec(source=str(models / "wan-refiner"))
    assert weights_source("wan-refiner", None, models) == str(models / "wan-refiner")

    other = tmp_path / "t2v"
    shutil.copytree(wan_folders["wan-refiner"], other)
    monkeypatch.setenv("CONTINUITY_MODEL_WAN_REFINER", str(other))
    assert create_backend("wan-i2v", models_dir=models).refiner_spec == LoadSpec(source=str(other))


# The command line


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_cli_backends_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_env: None) -> None:
    data = tmp_path / "data"

    code, out = run_cli(capsys, "backends", "--json", "--data-dir", str(data))

    assert code == 0
    payload = json.loads(out)
    assert list(payload) == ["backends"]
    entries = payload["backends"]
    assert [entry["name"] for entry in entries] == ORDER + PICTURE_ORDER
    assert [entry["kind"] for entry in entries] == ["video"] * 4 + ["keyframe"] * 3
    pictures, entries = entries[4:], entries[:4]
    assert [entry["available"] for entry in pictures] == [True, False, False]
    assert set(pictures[1]["capabilities"]) == set(PictureCapabilities.__dataclass_fields__)
    assert pictures[1]["capabilities"]["max_images"] == 3 and pictures[2]["capabilities"]["max_images"] == 4
    assert "CONTINUITY_MODEL_QWEN_IMAGE_EDIT" in pictures[1]["reason"]
    for entry in entries:
        assert set(entry) == {"name", "kind", "label", "available", "reason", "source", "capabilities", "refiner"}
        assert set(entry["capabilities"]) == CAPABILITY_KEYS
        assert isinstance(entry["available"], bool)
        assert entry["reason"]
    assert [entry["available"] for entry in entries] == [True, False, False, False]
    sana = entries[1]
    assert sana["label"] == "SANA-WM"
    assert sana["source"] is None
    assert str(data / "models" / "sana-wm") in sana["reason"]
    assert sana["capabilities"]["camera_control"] == "path"
    assert sana["capabilities"]["frame_stride"] == 8
    assert entries[3]["capabilities"]["reference_images"] == 4


def test_cli_backends_sees_the_data_dir_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_env: None, sana_wm_folder: Path
) -> None:
    data = tmp_path / "data"
    copy_model(sana_wm_folder, data / "models" / "sana-wm")

    code, out = run_cli(capsys, "backends", "--json", "--data-dir", str(data))

    assert code == 0
    entries = {entry["name"]: entry for entry in json.loads(out)["backends"]}
    assert entries["sana-wm"]["available"] is True
    assert entries["sana-wm"]["source"] == str(data / "models" / "sana-wm")
    assert entries["wan-i2v"]["available"] is False

    code, text = run_cli(capsys, "backends", "--data-dir", str(data))
    assert code == 0
    lines = dict(line.split(maxsplit=1) for line in text.strip().splitlines())
    assert list(lines) == ORDER + PICTURE_ORDER
    assert lines["sana-wm"].split()[:2] == ["video", "ready"]
    assert lines["wan-vace"].split()[:2] == ["video", "unavailable"]
    assert lines["compose"].split()[:2] == ["keyframe", "ready"]


# Listing stays light


def test_listing_backends_does_not_import_torch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTINUITY_MODEL")}
    env |= {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_HUB_OFFLINE": "1"}
    code = (
        "import sys; from pipelines.registry import list_backends; "
        "infos = list_backends(None, {}); "
        "print([i.available for i in infos]); print('torch' in sys.modules)"
    )

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    available, torch_imported = done.stdout.strip().splitlines()
    assert available == "[True, False, False, False, True, False, False]"  # the video, then the keyframe backends
    assert torch_imported == "False"


def test_memory_profile_says_what_auto_settles_on(
    studio: Studio, sana_wm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from projects.backends import memory_profile

    monkeypatch.setenv("CONTINUITY_MODEL_SANA_WM", str(sana_wm_folder))
    spec, reason = memory_profile(studio, "sana-wm")
    assert (spec["device"], spec["dtype"], spec["offload"]) == ("cpu", "float32", "none")
    assert spec["source"] == str(sana_wm_folder) and "no CUDA GPU" in reason
    assert memory_profile(studio, "animatic") is None
