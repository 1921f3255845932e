"""Fetching weights into the models folder: the download path, with the hub itself replaced at the network edge.

``huggingface_hub.snapshot_download`` is swapped for a stand-in that "downloads" a fake repository by the same
rules (its own ``filter_repo_objects`` applies the patterns the studio passes), so what is checked is the
studio's side: which files it asks for, where they land, and that a backend never sees half a model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.errors
import pytest
from huggingface_hub.utils import filter_repo_objects
from PIL import Image

from projects.backends import SOURCE_FILE, WEIGHT_PATTERNS, available_backends, fetch_weights, models_dir
from projects.errors import StudioError
from projects.studio import Studio

PICKLES = ("transformer/diffusion_pytorch_model.bin", "text_encoder/pytorch_model.pt", "vae/model.ckpt", "x.pkl")


class FakeHub:
    """A repository of the tiny SANA-WM folder plus pickled weights, served into ``local_dir`` on request."""

    def __init__(self, folder: Path, fail_after: int | None = None) -> None:
        self.files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.files |= {name: b"pickle" for name in PICKLES}
        self.calls: list[dict[str, Any]] = []
        self.fail_after = fail_after

    def snapshot_download(self, repo_id: str, *, revision: str | None, local_dir: Path, allow_patterns: list[str]):
        self.calls.append({"repo_id": repo_id, "revision": revision, "local_dir": Path(local_dir)})
        wanted = sorted(filter_repo_objects(self.files, allow_patterns=allow_patterns))
        for count, name in enumerate(wanted):
            if self.fail_after is not None and count == self.fail_after:
                raise OSError("connection reset by peer")
            target = Path(local_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.files[name])
        return str(local_dir)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, sana_wm_folder: Path) -> FakeHub:
    fake = FakeHub(sana_wm_folder)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.delenv("CONTINUITY_MODELS", raising=False)
    monkeypatch.delenv("CONTINUITY_MODEL_SANA_WM", raising=False)
    return fake


def sana_available(studio: Studio) -> bool:
    return next(b for b in available_backends(studio) if b.name == "sana-wm").available


def test_download_takes_safetensors_and_configs_only_and_the_backend_finds_them(
    studio: Studio, hub: FakeHub, sana_wm_folder: Path
) -> None:
    assert not sana_available(studio)
    folder = fetch_weights(studio, "sana-wm", "Efficient-Large-Model/SANA-WM", revision="0123abcd")
    assert folder == studio.data_dir / "models" / "sana-wm" and folder.is_dir() and not folder.is_symlink()
    assert hub.calls[0]["repo_id"] == "Efficient-Large-Model/SANA-WM" and hub.calls[0]["revision"] == "0123abcd"
    # Downloaded beside, then renamed into place: a backend never sees a half-downloaded folder.
    assert hub.calls[0]["local_dir"] == folder.with_name(".sana-wm.partial")
    got = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert not any(name.endswith((".bin", ".pt", ".ckpt", ".pkl")) for name in got)
    expected = {str(p.relative_to(sana_wm_folder)) for p in sana_wm_folder.rglob("*") if p.is_file()}
    assert got == expected | {SOURCE_FILE}  # the tiny folder holds only configs, safetensors and tokenizer files
    assert json.loads((folder / SOURCE_FILE).read_text()) == {
        "source": "Efficient-Large-Model/SANA-WM",
        "revision": "0123abcd",
    }
    assert sana_available(studio)

    # The same source and revision again: brought up to date in place.
    fetch_weights(studio, "sana-wm", "Efficient-Large-Model/SANA-WM", revision="0123abcd")
    assert hub.calls[1]["local_dir"] == folder
    # Another revision (or repo) downloads beside and replaces the folder whole: no files of two models mixed.
    (folder / "transformer" / "left-from-the-old-revision.safetensors").write_bytes(b"old")
    assert fetch_weights(studio, "sana-wm", "Efficient-Large-Model/SANA-WM", revision="4567ef01") == folder
    assert hub.calls[2]["local_dir"] == folder.with_name(".sana-wm.partial")
    assert not (folder / "transformer" / "left-from-the-old-revision.safetensors").exists()
    assert json.loads((folder / SOURCE_FILE).read_text())["revision"] == "4567ef01"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["sana-wm"]


def test_an_interrupted_download_leaves_no_model_a_backend_would_take(
    studio: Studio, hub: FakeHub, sana_wm_folder: Path
) -> None:
    hub.fail_after = 3
    with pytest.raises(StudioError, match="could not download Efficient-Large-Model/SANA-WM: connection reset"):
        fetch_weights(studio, "sana-wm", "Efficient-Large-Model/SANA-WM")
    assert not (studio.data_dir / "models" / "sana-wm").exists()
    assert not sana_available(studio)
    # The next try resumes into the same hidden folder and completes.
    hub.fail_after = None
    fetch_weights(studio, "sana-wm", "Efficient-Large-Model/SANA-WM")
    assert hub.calls[1]["local_dir"] == hub.calls[0]["local_dir"]
    assert sana_available(studio)


def test_a_repo_id_the_hub_rejects_is_bad_input(studio: Studio, hf_offline: Path) -> None:
    from projects.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not a Hugging Face repo id the hub accepts"):
        fetch_weights(studio, "sana-wm", "own er/na me")  # the hub's own validation, before any request
    assert not (studio.data_dir / "models").exists() or list((studio.data_dir / "models").iterdir()) == []


def test_a_repo_that_is_not_a_diffusers_model_is_refused(studio: Studio, hub: FakeHub) -> None:
    hub.files = {"README.md": b"# weights", "model.safetensors": b"x", "config.json": b"{}"}
    with pytest.raises(StudioError, match="not a diffusers model folder"):
        fetch_weights(studio, "sana-wm", "someone/a-classifier")
    assert not (studio.data_dir / "models" / "sana-wm").exists()


def test_patterns_name_nothing_that_unpickles() -> None:
    names = ["a.bin", "b.pt", "c.pth", "d.ckpt", "e.pkl", "f.pickle", "g.msgpack", "h.h5", "i.safetensors"]
    assert list(filter_repo_objects(names, allow_patterns=list(WEIGHT_PATTERNS))) == ["i.safetensors"]


def test_a_local_folder_is_linked_not_copied(studio: Studio, sana_wm_folder: Path, tmp_path: Path) -> None:
    own = tmp_path / "my-models" / "sana"
    shutil.copytree(sana_wm_folder, own)
    folder = fetch_weights(studio, "sana-wm", own)
    assert folder.is_symlink() and folder.resolve() == own.resolve()
    assert fetch_weights(studio, "sana-wm", own) == folder  # the same link again is fine
    assert sana_available(studio)


def test_one_models_folder_for_fetching_finding_and_showing(
    studio: Studio, sana_wm_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$CONTINUITY_MODELS`` moves the models folder for everything at once: where weights are fetched to, where
    the backends find them, and the folder the Settings tab names."""
    monkeypatch.delenv("CONTINUITY_MODEL_SANA_WM", raising=False)
    monkeypatch.delenv("CONTINUITY_MODELS", raising=False)
    assert models_dir(studio) == studio.data_dir / "models"
    elsewhere = tmp_path / "shared-models"
    monkeypatch.setenv("CONTINUITY_MODELS", str(elsewhere))
    assert models_dir(studio) == elsewhere
    assert fetch_weights(studio, "sana-wm", sana_wm_folder) == elsewhere / "sana-wm"
    assert sana_available(studio)
    assert not (studio.data_dir / "models").exists()


# SANA-WM as published: the backbone and its refiner in two repositories.

STAGE1 = "Efficient-Large-Model/SANA-WM_bidirectional-diffusers"
REFINER = "Efficient-Large-Model/SANA-WM_bidirectional-diffusers-refiner"


class PublishedHub:
    """Several repositories, each a folder's files, served as :class:`FakeHub` serves one; ``fail`` makes one
    repository's download break after some files."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.calls: list[str] = []
        self.fail: dict[str, int] = {}

    def snapshot_download(self, repo_id: str, *, revision: str | None, local_dir: Path, allow_patterns: list[str]):
        del revision
        self.calls.append(repo_id)
        if repo_id not in self.repos:
            raise huggingface_hub.errors.RepositoryNotFoundError(f"404: {repo_id}", response=None)
        files = self.repos[repo_id]
        for count, name in enumerate(sorted(filter_repo_objects(files, allow_patterns=allow_patterns))):
            if self.fail.get(repo_id) == count:
                raise OSError("connection reset by peer")
            target = Path(local_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[name])
        return str(local_dir)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch, sana_wm_folder: Path) -> PublishedHub:
    """The tiny SANA-WM split as the real one is published: stage 1 alone, and the refiner's own repository."""
    files = {str(p.relative_to(sana_wm_folder)): p.read_bytes() for p in sana_wm_folder.rglob("*") if p.is_file()}
    stage1 = {name: data for name, data in files.items() if not name.startswith("refiner/")}
    refiner = {name.removeprefix("refiner/"): data for name, data in files.items() if name.startswith("refiner/")}
    hub = PublishedHub({STAGE1: stage1, REFINER: refiner})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    for variable in ("CONTINUITY_MODELS", "CONTINUITY_MODEL_SANA_WM", "CONTINUITY_MODEL_SANA_WM_REFINER"):
        monkeypatch.delenv(variable, raising=False)
    return hub


def sana(studio: Studio) -> Any:
    return next(b for b in available_backends(studio) if b.name == "sana-wm")


def test_fetching_sana_wm_lays_out_both_published_stages_and_the_refiner_renders(
    studio: Studio, published: PublishedHub
) -> None:
    from pipelines.backend import GenerationRequest, RefinerSettings
    from pipelines.registry import create_backend
    from projects.backends import fetch_backend

    assert not sana(studio).available and not sana(studio).refiner.installed
    fetched = fetch_backend(studio, "sana-wm", STAGE1)
    models = studio.data_dir / "models"
    assert published.calls == [STAGE1, REFINER]
    assert (fetched.folder, fetched.refiner_folder, fetched.refiner_problem) == (
        models / "sana-wm",
        models / "sana-wm-refiner",
        None,
    )
    assert not (models / "sana-wm" / "refiner").exists()
    assert json.loads((models / "sana-wm-refiner" / SOURCE_FILE).read_text())["source"] == REFINER
    info = sana(studio)
    assert info.available and info.refiner.installed and info.refiner.source == str(models / "sana-wm-refiner")

    # The refiner found under its own name renders a refined take on the backbone found under its own.
    backend = create_backend("sana-wm", models_dir=models, device="cpu")
    keyframe = Image.new("RGB", (32, 32), (90, 120, 160))
    request = GenerationRequest(
        prompt="a lighthouse",
        width=32,
        height=32,
        fps=8,
        num_frames=17,
        seed=1,
        keyframe=keyframe,
        steps=2,
        guidance=1.0,
        refiner=RefinerSettings(enabled=True),
    )
    result = backend.generate(request)
    assert "refiner" in result.timings
    assert result.parameters["provenance"]["refiner"]["model_folder"] == str((models / "sana-wm-refiner").resolve())
    backend.unload()


def test_an_interrupted_refiner_download_leaves_the_backbone_usable_and_the_refiner_not_installed(
    studio: Studio, published: PublishedHub, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    published.fail[REFINER] = 2
    code = main(["fetch-weights", "sana-wm", STAGE1, "--data-dir", str(studio.data_dir), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert payload["folder"] == str(studio.data_dir / "models" / "sana-wm")
    assert payload["refiner"]["name"] == "sana-wm-refiner" and payload["refiner"]["folder"] is None
    assert (
        "connection reset" in payload["refiner"]["problem"]
        and "fetch-weights sana-wm-refiner" in payload["refiner"]["problem"]
    )
    info = sana(studio)
    assert info.available and not info.refiner.installed
    assert "not installed" in info.refiner.reason
    assert not (studio.data_dir / "models" / "sana-wm-refiner").exists()
    # Asked for, the refiner is refused before the backbone renders anything.
    from pipelines.backend import GenerationRequest, RefinerSettings, RequestError
    from pipelines.registry import create_backend

    backend = create_backend("sana-wm", models_dir=studio.data_dir / "models", device="cpu")
    with pytest.raises(RequestError, match="SANA-WM refiner is not installed: fetch it"):
        backend.generate(
            GenerationRequest(
                prompt="a lighthouse",
                width=32,
                height=32,
                fps=8,
                num_frames=17,
                keyframe=Image.new("RGB", (32, 32)),
                refiner=RefinerSettings(enabled=True),
            )
        )
    # Fetched again on its own, it resumes and installs.
    published.fail.clear()
    code = main(["fetch-weights", "sana-wm-refiner", REFINER, "--data-dir", str(studio.data_dir), "--json"])
    capsys.readouterr()
    assert code == 0 and sana(studio).refiner.installed


def test_the_backbone_alone_when_asked_and_the_older_layout_still_counts(
    studio: Studio, published: PublishedHub, sana_wm_folder: Path
) -> None:
    from projects.backends import fetch_backend

    fetched = fetch_backend(studio, "sana-wm", STAGE1, refiner=False)
    assert published.calls == [STAGE1] and fetched.refiner is None
    assert not sana(studio).refiner.installed
    # A refiner/ folder inside the SANA-WM folder (how earlier versions laid it out) is the refiner.
    shutil.copytree(sana_wm_folder / "refiner", fetched.folder / "refiner")
    info = sana(studio)
    assert info.refiner.installed and info.refiner.source == str(fetched.folder.resolve() / "refiner")
