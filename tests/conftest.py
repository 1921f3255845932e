"""Shared fixtures: a real data directory in a temp folder, and real photographs as reference images.

The photographs ship with scikit-image (``skimage.data``), so no test downloads anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from projects.studio import Studio, open_studio


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread: the tiny models are too small to gain from more, and on a 2-core machine threads
    fighting each other made renders 10x slower and timings noisy."""
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a requirement
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Studio]:
    opened = open_studio(tmp_path / "data")
    yield opened
    opened.close()


def save_photo(array: np.ndarray, path: Path, size: int | None = 128) -> Path:
    image = Image.fromarray(array)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if size:
        image.thumbnail((size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photographs as small PNG/JPEG files: astronaut, chelsea (a cat), coffee, rocket."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    return {
        "astronaut": save_photo(data.astronaut(), folder / "astronaut.png"),
        "chelsea": save_photo(data.chelsea(), folder / "chelsea.jpg"),
        "coffee": save_photo(data.coffee(), folder / "coffee.png"),
        "rocket": save_photo(data.rocket(), folder / "rocket.webp"),
    }


@pytest.fixture(scope="session")
def sana_wm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SANA-WM model folder (with its refiner), saved as a user's download is laid out."""
    from tiny_sana_wm import build_sana_wm_folder

    return build_sana_wm_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def wan_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random Wan folders: image-to-video, VACE, and the text-to-video model the refiner uses."""
    from tiny_wan import build_wan_i2v_folder, build_wan_v2v_folder, build_wan_vace_folder

    root = tmp_path_factory.mktemp("models")
    return {
        "wan-i2v": build_wan_i2v_folder(root),
        "wan-vace": build_wan_vace_folder(root),
        "wan-refiner": build_wan_v2v_folder(root),
    }


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline: nothing can be found in it or fetched into it.

    huggingface_hub reads its environment once, at import, so its constants are pointed there too.
    """
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache
