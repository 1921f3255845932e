"""The studio's view of the video backends: which exist, which can run here, and where their weights are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.registry import BackendInfo, create_backend, list_backends
from projects.studio import Studio

MODELS_FOLDER = "models"


def models_dir(studio: Studio) -> Path:
    """``models/`` in the data directory, unless ``CONTINUITY_MODELS`` says otherwise (see pipelines.registry)."""
    return studio.data_dir / MODELS_FOLDER


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
