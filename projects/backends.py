"""The studio's view of the video backends: which exist, which can run here, and where their weights are."""

from __future__ import annotations

from pathlib import Path

from pipelines.registry import BackendInfo, list_backends
from projects.studio import Studio

MODELS_FOLDER = "models"


def models_dir(studio: Studio) -> Path:
    """``models/`` in the data directory, unless ``CONTINUITY_MODELS`` says otherwise (see pipelines.registry)."""
    return studio.data_dir / MODELS_FOLDER


def available_backends(studio: Studio) -> list[BackendInfo]:
    return list_backends(models_dir(studio))
