"""pipelines.embedders on real photographs and through the real loader on tiny model folders.

Faces are looked for in scikit-image's photographs (the astronaut has one; the coffee cup and the rocket have
none). The offline embedder is checked for what scores rely on: the same row for the same image, unit rows, and a
photograph nearer a cropped, resized, brightened copy of itself than any other photograph. The transformers
embedder loads tiny random CLIP, DINOv2 and SigLIP models that these tests build under ``torch.manual_seed(0)`` and
save with ``save_pretrained`` beside their image processors, exactly as a user's model folder is laid out; hub
ids are looked up in an empty, offline Hugging Face cache, so nothing is downloaded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from tiny_embedders import BUILDERS, PROCESSOR_SIZE, TINY_VISION, save_tiny

from pipelines.backend import BackendError
from pipelines.consistency import stability
from pipelines.embedders import (
    FAMILIES,
    Embedder,
    EmbedderError,
    EmbedderNotFound,
    OfflineEmbedder,
    PickledWeightsRefused,
    TransformersEmbedder,
    UnsupportedEmbedder,
    detect_faces,
    face_crops,
    load_embedder,
    subject_crop,
    unload_embedders,
)


@pytest.fixture(scope="module")
def pictures() -> dict[str, Image.Image]:
    """scikit-image's photographs at 256 px, as RGB PIL images."""
    from skimage import data

    pictures = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        image.thumbnail((256, 256))
        pictures[name] = image
    return pictures


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    unload_embedders()
    yield
    unload_embedders()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    root = tmp_path_factory.mktemp("embedders")
    return {family: save_tiny(root, family) for family in BUILDERS}


# Faces and crops.


def test_detect_faces_finds_the_astronaut_and_no_face_in_objects(pictures: dict[str, Image.Image]) -> None:
    faces = detect_faces(pictures["astronaut"])
    assert len(faces) == 1
    x, y, w, h = faces[0]
    # Her face is in the upper middle of the picture, about a fifth of its width.
    assert 70 < x + w / 2 < 150 and 30 < y + h / 2 < 90
    assert 0.12 < w / pictures["astronaut"].width < 0.3
    for name in ("coffee", "rocket"):
        assert detect_faces(pictures[name]) == [], name


def test_detect_faces_on_a_small_frame_and_an_array(pictures: dict[str, Image.Image]) -> None:
    """A 128 px frame holds a 25 px face, under the cascade's window: detection enlarges the image first."""
    small = pictures["astronaut"].resize((128, 128))
    faces = detect_faces(np.asarray(small))
    assert len(faces) == 1
    assert faces[0][2] < 40  # in the frame's own pixels, not the enlarged ones


def test_face_crops_pad_the_face_and_subject_crop_is_the_centre(pictures: dict[str, Image.Image]) -> None:
    astronaut = pictures["astronaut"]
    (_, _, w, h) = detect_faces(astronaut)[0]
    (crop,) = face_crops(astronaut, pad=0.25)
    assert crop.width == pytest.approx(w * 1.5, abs=2) and crop.height == pytest.approx(h * 1.5, abs=2)
    assert face_crops(pictures["coffee"]) == []
    centre = subject_crop(pictures["coffee"])
    assert centre.size == (round(256 * 0.6), round(pictures["coffee"].height * 0.6))
    expected = pictures["coffee"].crop((51, 34, 51 + centre.width, 34 + centre.height))
    assert np.array_equal(np.asarray(centre), np.asarray(expected))


# The offline embedder.


def _variant(image: Image.Image) -> Image.Image:
    """Slightly cropped, resized and brightened: what a re-render of the same subject might show."""
    w, h = image.size
    cropped = image.crop((round(w * 0.06), round(h * 0.05), round(w * 0.95), round(h * 0.96)))
    return ImageEnhance.Brightness(cropped.resize((round(w * 0.8), round(h * 0.8)))).enhance(1.15)


def test_offline_embedder_is_deterministic_and_unit_norm(pictures: dict[str, Image.Image]) -> None:
    embedder = OfflineEmbedder()
    images = list(pictures.values())
    rows = embedder.embed(images)
    assert isinstance(embedder, Embedder)
    assert rows.dtype == np.float32 and rows.shape == (len(images), embedder.width)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(rows, OfflineEmbedder().embed(images))
    assert np.array_equal(rows[2:3], embedder.embed([images[2]]))  # a row does not depend on its batch
    assert embedder.embed([]).shape == (0, embedder.width)


def test_offline_embedder_knows_a_photo_from_a_variant_of_itself(pictures: dict[str, Image.Image]) -> None:
    embedder = OfflineEmbedder()
    names = list(pictures)
    rows = embedder.embed([pictures[name] for name in names])
    variants = embedder.embed([_variant(pictures[name]) for name in names])
    for index, name in enumerate(names):
        to_self = float(variants[index] @ rows[index])
        to_others = [float(variants[index] @ rows[other]) for other in range(len(names)) if other != index]
        assert to_self > 0.85, name
        assert to_self > max(to_others) + 0.15, (name, to_self, to_others)


def test_offline_embedder_is_fast(pictures: dict[str, Image.Image]) -> None:
    embedder = OfflineEmbedder()
    crops = [pictures["astronaut"].resize((224, 224))] * 20
    embedder.embed(crops[:2])
    start = time.perf_counter()
    embedder.embed(crops)
    per_crop = (time.perf_counter() - start) / len(crops)
    assert per_crop < 0.02  # about 1 ms here; a loose bound for a loaded CI machine


# The transformers embedder.


@pytest.mark.parametrize("family", list(BUILDERS))
def test_transformers_embedder_loads_each_family(
    family: str, tiny_models: dict[str, tuple[Path, torch.nn.Module]], pictures: dict[str, Image.Image]
) -> None:
    folder, model = tiny_models[family]
    embedder = TransformersEmbedder(str(folder), device="cpu")
    images = [pictures["astronaut"], pictures["coffee"], pictures["astronaut"]]
    rows = embedder.embed(images)
    width = BUILDERS[family][1]
    assert rows.dtype == np.float32 and rows.shape == (3, width)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(rows, embedder.embed(images))  # the same inputs, the same rows
    np.testing.assert_allclose(rows[0], rows[2], atol=1e-6)  # (within a batch, up to float rounding)
    assert not np.allclose(rows[0], rows[1])
    assert embedder.id.startswith(f"{family}:{folder.name}:") and len(embedder.id.rsplit(":", 1)[1]) == 10
    # The row is the family's image embedding, computed here straight from the model that was saved.
    pixels = embedder.processor(images=images[:1], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        if family in ("clip", "siglip"):
            expected = model.get_image_features(pixel_values=pixels).pooler_output
        elif family == "clip_vision_model":
            expected = model(pixel_values=pixels).image_embeds
        else:
            expected = model(pixel_values=pixels).pooler_output
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(rows[:1], expected, atol=1e-5)


def test_dinov2_embedding_is_the_cls_token(
    tiny_models: dict[str, tuple[Path, torch.nn.Module]], pictures: dict[str, Image.Image]
) -> None:
    folder, model = tiny_models["dinov2"]
    embedder = TransformersEmbedder(str(folder), device="cpu")
    pixels = embedder.processor(images=[pictures["chelsea"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls = model(pixel_values=pixels).last_hidden_state[:, 0]
    np.testing.assert_allclose(
        embedder.embed([pictures["chelsea"]]), torch.nn.functional.normalize(cls, dim=-1).numpy(), atol=1e-5
    )


def test_transformers_embedder_batches_give_the_same_rows(
    tiny_models: dict[str, tuple[Path, torch.nn.Module]], pictures: dict[str, Image.Image]
) -> None:
    folder, _ = tiny_models["siglip"]
    images = list(pictures.values())
    whole = TransformersEmbedder(str(folder), device="cpu", batch_size=16).embed(images)
    in_twos = TransformersEmbedder(str(folder), device="cpu", batch_size=2).embed(images)
    np.testing.assert_allclose(whole, in_twos, atol=1e-5)


def test_a_clip_vision_tower_without_projection_gives_its_pooled_output(
    tmp_path: Path, pictures: dict[str, Image.Image]
) -> None:
    """Loading the projection class from a folder without a projection would invent one at random: not here."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(**TINY_VISION)).eval()
    folder = tmp_path / "tiny-clip-tower"
    model.save_pretrained(folder)
    CLIPImageProcessor(**PROCESSOR_SIZE).save_pretrained(folder)
    embedder = TransformersEmbedder(str(folder), device="cpu")
    rows = embedder.embed([pictures["rocket"]])
    pixels = embedder.processor(images=[pictures["rocket"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = model(pixel_values=pixels).pooler_output
    assert rows.shape == (1, 32)
    np.testing.assert_allclose(rows, torch.nn.functional.normalize(pooled, dim=-1).numpy(), atol=1e-5)


def test_a_folder_whose_weights_lack_what_its_config_names_is_refused(tmp_path: Path) -> None:
    """A config that says "with projection" over a tower saved without one: refused, not filled in at random."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    folder = tmp_path / "mislabelled"
    CLIPVisionModel(CLIPVisionConfig(**TINY_VISION)).save_pretrained(folder)
    CLIPImageProcessor(**PROCESSOR_SIZE).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["CLIPVisionModelWithProjection"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmbedderError, match="visual_projection"):
        TransformersEmbedder(str(folder))


def test_a_folder_without_an_image_processor_is_refused(tmp_path: Path) -> None:
    folder, _ = save_tiny(tmp_path, "dinov2")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(EmbedderError, match="image processor"):
        TransformersEmbedder(str(folder))


@pytest.mark.cuda
def test_transformers_embedder_on_cuda_matches_the_cpu(
    tiny_models: dict[str, tuple[Path, torch.nn.Module]], pictures: dict[str, Image.Image]
) -> None:
    folder, _ = tiny_models["clip"]
    images = list(pictures.values())
    on_gpu = TransformersEmbedder(str(folder), device="cuda")
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(
        on_gpu.embed(images), TransformersEmbedder(str(folder), device="cpu").embed(images), atol=1e-3
    )


def test_a_different_config_is_a_different_id(tiny_models: dict[str, tuple[Path, torch.nn.Module]]) -> None:
    import shutil

    folder, _ = tiny_models["dinov2"]
    original = TransformersEmbedder(str(folder), device="cpu").id
    copy = Path(shutil.copytree(folder, folder.parent / "copy" / folder.name))
    config = json.loads((copy / "config.json").read_text())
    config["layer_norm_eps"] = 1e-5
    (copy / "config.json").write_text(json.dumps(config))
    changed = TransformersEmbedder(str(copy), device="cpu").id
    assert changed != original and changed.rsplit(":", 1)[0] == original.rsplit(":", 1)[0]


def test_pickle_only_weights_are_refused(tmp_path: Path) -> None:
    folder, model = save_tiny(tmp_path, "dinov2")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(PickledWeightsRefused, match=r"pytorch_model\.bin") as caught:
        TransformersEmbedder(str(folder))
    assert isinstance(caught.value, BackendError)
    assert "safetensors" in str(caught.value)


def test_unknown_model_type_is_refused_with_the_supported_ones(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    folder = tmp_path / "tiny-vit"
    ViTModel(ViTConfig(**TINY_VISION)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    with pytest.raises(UnsupportedEmbedder) as caught:
        load_embedder(str(folder))
    message = str(caught.value)
    assert "vit" in message
    for model_type in FAMILIES:
        assert model_type in message


def test_missing_folder_and_uncached_hub_id_are_refused(tmp_path: Path, hf_offline: Path) -> None:
    with pytest.raises(EmbedderNotFound, match="not found"):
        load_embedder(str(tmp_path / "no-such-model"))
    with pytest.raises(EmbedderNotFound, match="not in the Hugging Face cache") as caught:
        load_embedder("openai/clip-vit-base-patch32")
    assert isinstance(caught.value, BackendError)
    assert not any(hf_offline.iterdir())  # nothing was downloaded into the cache


def test_load_embedder_caches_by_name(tiny_models: dict[str, tuple[Path, torch.nn.Module]]) -> None:
    assert isinstance(load_embedder(None), OfflineEmbedder)
    assert load_embedder(None) is load_embedder("offline")
    folder, _ = tiny_models["clip"]
    loaded: list[Embedder] = []
    threads = [threading.Thread(target=lambda: loaded.append(load_embedder(str(folder)))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loaded) == 4 and all(embedder is loaded[0] for embedder in loaded)
    assert isinstance(loaded[0], TransformersEmbedder)
    assert unload_embedders() == 2
    assert load_embedder(str(folder)) is not loaded[0]


def test_scores_record_the_transformers_embedder(
    tiny_models: dict[str, tuple[Path, torch.nn.Module]], pictures: dict[str, Image.Image]
) -> None:
    """Scores carry the id of the embedder that made them, and a random tiny model still gives stable 0..1 values."""
    folder, _ = tiny_models["dinov2"]
    embedder = load_embedder(str(folder))
    frames = np.stack([np.asarray(pictures["astronaut"].resize((64, 48)))] * 5)
    score = stability(frames, embedder)
    assert score.embedder == embedder.id and score.embedder.startswith("dinov2:")
    assert score.value == pytest.approx(1.0, abs=1e-5)  # five identical frames are perfectly stable
