"""The studio's view of the video backends: which exist, which can run here, and where their weights are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipelines.registry import MODELS_ENV, BackendInfo, backend_class, backend_names, create_backend, list_backends
from projects.errors import Conflict, InvalidInput, StudioError
from projects.studio import Studio

MODELS_FOLDER = "models"
# What a diffusers model folder needs, and nothing that unpickles: configs, safetensors weights, tokenizer files.
WEIGHT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken")


def models_dir(studio: Studio) -> Path:
    """``models/`` in the data directory, unless ``CONTINUITY_MODELS`` says otherwise (see pipelines.registry)."""
    return studio.data_dir / MODELS_FOLDER


def weights_folder(studio: Studio) -> Path:
    """The folder whose ``<backend>`` subfolders the backends look in: ``$CONTINUITY_MODELS``, else ``models/``."""
    return Path(os.environ[MODELS_ENV]) if os.environ.get(MODELS_ENV) else models_dir(studio)


def weight_names() -> list[str]:
    """Names weights are kept under: the diffusion backends, and the refiners they find the same way."""
    names = []
    for name in backend_names():
        cls = backend_class(name)
        if getattr(cls, "default_source", None) is not None:
            names.append(name)
        refiner = getattr(cls, "refiner_key", None)
        if refiner and refiner not in names:
            names.append(refiner)
    return names


def fetch_weights(studio: Studio, name: str, source: str | Path, *, revision: str | None = None) -> Path:
    """Put the weights for ``name`` (a backend such as ``sana-wm``, or ``wan-refiner``) where the backends look.

    ``source`` is a model folder on this machine (linked, not copied) or a Hugging Face repo id, downloaded (only
    configs, safetensors and tokenizer files; never pickles) into ``<models>/<name>``. This is the one place the
    studio downloads anything, and only when asked. Returns the folder.
    """
    names = weight_names()
    if name not in names:
        raise InvalidInput(f"must be one of {', '.join(names)}, got {name!r}", "backend")
    target = weights_folder(studio) / name
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

    # A first download goes to a hidden folder renamed into place when complete (a backend never finds half a
    # model); fetching again updates the folder in place. Either way an interrupted download resumes.
    into = target if target.is_dir() else target.with_name(f".{name}.partial")
    try:
        snapshot_download(source, revision=revision, local_dir=into, allow_patterns=list(WEIGHT_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise StudioError(f"could not download {source}: {exc}") from exc
    if not (into / "model_index.json").is_file():
        raise StudioError(f"{source} downloaded, but it is not a diffusers model folder (no model_index.json)")
    if into != target:
        into.rename(target)
    return target


def available_backends(studio: Studio) -> list[BackendInfo]:
    return list_backends(models_dir(studio))


def memory_profile(studio: Studio, name: str) -> tuple[dict[str, Any], str] | None:
    """The load spec ``auto`` settles on for this machine, and why; None for a backend without weights here.

    Settling only reads the model folder and the free VRAM: nothing is loaded.
    """
    backend = create_backend(name, models_dir=models_dir(studio))
    settle = getattr(backend, "settle", None)
    if settle is None:
        return None
    spec = settle()
    return spec.to_json(), backend.profile_reason
