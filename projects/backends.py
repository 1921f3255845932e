"""The studio's view of the video backends: which exist, which can run here, and where their weights are."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.backend import BackendError
from pipelines.loading import cuda_free_memory, host_free_memory
from pipelines.memory_plan import GIB, Plan, WorkSize
from pipelines.registry import (
    BackendInfo,
    any_backend_class,
    backend_names,
    create_backend,
    create_picture_backend,
    list_backends,
    models_folder,
    picture_backend_names,
    plan_backend,
)
from projects.errors import Conflict, InvalidInput, StudioError
from projects.studio import Studio

MODELS_FOLDER = "models"
# What a diffusers model folder needs, and nothing that unpickles: configs, safetensors weights, tokenizer files.
WEIGHT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken")
SOURCE_FILE = ".continuity-source.json"  # in a downloaded folder: the repo and revision it holds


def models_dir(studio: Studio) -> Path:
    """The folder whose ``<backend>`` subfolders the backends look in: ``$CONTINUITY_MODELS``, else ``models/`` in
    the data directory (the rule is :func:`pipelines.registry.models_folder`'s)."""
    found = models_folder(studio.data_dir / MODELS_FOLDER)
    assert found is not None
    return found


def weight_names() -> list[str]:
    """Names weights are kept under: the diffusion backends, and the refiners they find the same way."""
    names = []
    for name in backend_names() + picture_backend_names():
        cls = any_backend_class(name)
        if getattr(cls, "default_source", None) is not None:
            names.append(name)
        refiner = getattr(cls, "refiner_key", None)
        if refiner and refiner not in names:
            names.append(refiner)
    return names


def _fetched_from(record: Path) -> dict[str, Any] | None:
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return None


def _forget(partial: Path, record: Path) -> None:
    """After a failed download: nothing to resume means no record of what was being fetched either."""
    if not partial.exists():
        record.unlink(missing_ok=True)


def fetch_weights(studio: Studio, name: str, source: str | Path, *, revision: str | None = None) -> Path:
    """Put the weights for ``name`` (a backend such as ``sana-wm``, or ``wan-refiner``) where the backends look.

    ``source`` is a model folder on this machine (linked, not copied) or a Hugging Face repo id, downloaded (only
    configs, safetensors and tokenizer files; never pickles) into ``<models>/<name>``. This is the one place the
    studio downloads anything, and only when asked. Returns the folder.
    """
    names = weight_names()
    if name not in names:
        raise InvalidInput(f"must be one of {', '.join(names)}, got {name!r}", "backend")
    target = models_dir(studio) / name
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise InvalidInput(f"{local} is not a diffusers model folder (it has no model_index.json)", "source")
        local = local.resolve()
        if target.is_symlink() and target.resolve() == local:
            return target
        if target.exists() or target.is_symlink():
            raise Conflict(f"{target} already holds weights for {name}; remove it first to use {local}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(local, target_is_directory=True)
        return target
    if not isinstance(source, str) or source.count("/") != 1 or source.startswith(("/", ".", "~")):
        raise InvalidInput(
            f"is neither a folder on this machine nor a Hugging Face repo id (owner/name): {source!r}", "source"
        )
    if target.is_symlink():
        raise Conflict(f"{target} links to {target.resolve()}; remove the link first to download {source}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    # The download goes to a hidden folder that replaces the model folder only when complete, so a backend never
    # finds half a model, nor files of two models mixed. An interrupted download of the same source resumes; a
    # folder already holding this source and revision is brought up to date in place.
    wanted = {"source": source, "revision": revision}
    partial = target.with_name(f".{name}.partial")
    partial_source = target.with_name(f".{name}.partial.json")
    into = target if target.is_dir() and _fetched_from(target / SOURCE_FILE) == wanted else partial
    if into == partial:
        if partial.exists() and _fetched_from(partial_source) != wanted:
            shutil.rmtree(partial)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial_source.write_text(json.dumps(wanted))
    try:
        snapshot_download(source, revision=revision, local_dir=into, allow_patterns=list(WEIGHT_PATTERNS))
    except ValueError as exc:  # the hub's check of the repo id or revision
        _forget(partial, partial_source)
        raise InvalidInput(f"{source!r} is not a Hugging Face repo id the hub accepts: {exc}", "source") from exc
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        _forget(partial, partial_source)
        raise StudioError(f"could not download {source}: {exc}") from exc
    if not (into / "model_index.json").is_file():
        raise StudioError(f"{source} downloaded, but it is not a diffusers model folder (no model_index.json)")
    (into / SOURCE_FILE).write_text(json.dumps(wanted))
    if into == partial:
        partial_source.unlink(missing_ok=True)
        if target.exists():
            replaced = target.with_name(f".{name}.replaced")
            shutil.rmtree(replaced, ignore_errors=True)
            target.rename(replaced)
            partial.rename(target)
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            partial.rename(target)
    return target


@dataclass(frozen=True)
class Fetched:
    """Weights fetched for a backend, and its refiner's where they are published beside it: ``refiner_problem``
    says why the refiner is not installed when its download failed (the backbone is installed all the same)."""

    name: str
    folder: Path
    refiner: str | None = None
    refiner_folder: Path | None = None
    refiner_problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        refiner = None
        if self.refiner is not None:
            folder = str(self.refiner_folder) if self.refiner_folder else None
            refiner = {"name": self.refiner, "folder": folder, "problem": self.refiner_problem}
        return {"backend": self.name, "folder": str(self.folder), "refiner": refiner}


def refiner_repository(name: str, source: str | Path) -> str | None:
    """The hub repository of ``name``'s refiner when it is published beside the backbone's repo ``source``
    (SANA-WM: ``REPO`` and ``REPO-refiner``); None for a local folder or a backend without one."""
    if name not in backend_names() or not isinstance(source, str) or Path(source).expanduser().is_dir():
        return None
    cls = any_backend_class(name)
    if not getattr(cls, "refiner_published_beside", False):
        return None
    if source == getattr(cls, "default_source", None):
        return getattr(cls, "refiner_default_source", None)
    return f"{source}-refiner"


def fetch_backend(
    studio: Studio, name: str, source: str | Path, *, revision: str | None = None, refiner: bool = True
) -> Fetched:
    """:func:`fetch_weights` for ``name``, then, with ``refiner``, its refiner where it is published beside it, under
    the refiner's own weights name. A refiner that cannot be fetched leaves the backbone installed and says why."""
    folder = fetch_weights(studio, name, source, revision=revision)
    companion = refiner_repository(name, source) if refiner else None
    if companion is None:
        return Fetched(name, folder)
    key = any_backend_class(name).refiner_key  # type: ignore[union-attr]
    try:
        return Fetched(name, folder, key, fetch_weights(studio, key, companion))
    except StudioError as exc:
        return Fetched(name, folder, key, None, f"{exc}; fetch it again with: fetch-weights {key} {companion}")


def available_backends(studio: Studio) -> list[BackendInfo]:
    return list_backends(models_dir(studio))


def memory_plan(
    studio: Studio,
    name: str,
    *,
    vram_gib: float | None = None,
    ram_gib: float | None = None,
    refiner: bool = False,
    width: int | None = None,
    height: int | None = None,
    frames: int | None = None,
) -> Plan:
    """Backend ``name``'s memory plan on a card of ``vram_gib`` GiB (this machine's free VRAM when None) with
    ``ram_gib`` GiB of host RAM (unknown when None, for a card that is not here; this machine's free RAM for its
    own card), at a size (the backend's planning size where not given). Loads nothing."""
    names = backend_names() + picture_backend_names()
    if name not in names:
        raise InvalidInput(f"must be one of {', '.join(names)}, got {name!r}", "backend")
    for label, value in (("vram", vram_gib), ("ram", ram_gib)):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 4096):
            raise InvalidInput(f"must be a number of GiB above 0, got {value!r}", label)
    if vram_gib is None:
        free = cuda_free_memory()
        if free is None:
            raise InvalidInput("this machine has no CUDA GPU: give the card's memory, for example --vram 24", "vram")
        vram = free
        ram = int(ram_gib * GIB) if ram_gib is not None else host_free_memory()
    else:
        vram, ram = int(vram_gib * GIB), (int(ram_gib * GIB) if ram_gib is not None else None)
    default = getattr(any_backend_class(name), "plan_size", None)
    size = WorkSize(width or default.width, height or default.height, frames or default.frames) if default else None
    try:
        return plan_backend(name, vram=vram, ram=ram, refiner=refiner, size=size, models_dir=models_dir(studio))
    except BackendError as exc:
        raise InvalidInput(str(exc), "plan") from None


def memory_profile(studio: Studio, name: str) -> tuple[dict[str, Any], str] | None:
    """The load spec ``auto`` settles on for this machine, and why; None for a backend without weights here.

    Settling only reads the model folder and the free VRAM: nothing is loaded.
    """
    if name in picture_backend_names():
        backend: Any = create_picture_backend(name, models_dir=models_dir(studio))
    else:
        backend = create_backend(name, models_dir=models_dir(studio))
    settle = getattr(backend, "settle", None)
    if settle is None:
        return None
    spec = settle()
    return spec.to_json(), backend.profile_reason
