"""What services hand back: frozen snapshots, made inside the transaction, safe to use after it closes.

Nothing here lazy-loads; a record never reaches back into the database. ``to_json()`` gives the shapes the
command line prints with ``--json`` (documented in README.md), so those shapes change only on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    width: int
    height: int
    fps: int
    created_at: datetime
    character_count: int = 0
    shot_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "characters": self.character_count,
            "shots": self.shot_count,
            "created_at": _when(self.created_at),
        }


@dataclass(frozen=True)
class ReferenceInfo:
    id: int
    character_id: int
    position: int
    sha256: str
    extension: str
    path: Path
    original_name: str
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "path": str(self.path),
            "original_name": self.original_name,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True)
class CharacterInfo:
    id: int
    project_id: int
    name: str
    description: str
    references: tuple[ReferenceInfo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "references": [ref.to_json() for ref in self.references],
        }


@dataclass(frozen=True)
class Keyframe:
    """Where a shot's first (or last) frame comes from: ``drawn`` (an approved keyframe candidate), ``image``
    (uploaded), ``character`` (its first reference), ``next shot`` (a last frame: the next shot's first) or
    ``none``. See :mod:`projects.shot_pictures`."""

    source: str
    sha256: str | None = None
    path: Path | None = None
    character: str | None = None
    picture_take_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"source": self.source}
        if self.sha256:
            shown["sha256"] = self.sha256
            shown["path"] = str(self.path)
        if self.character:
            shown["character"] = self.character
        if self.picture_take_id is not None:
            shown["keyframe_candidate_id"] = self.picture_take_id
        return shown


@dataclass(frozen=True)
class ShotInfo:
    id: int
    project_id: int
    number: int  # 1-based place in the storyboard
    scene: str
    title: str
    prompt: str
    duration: float
    camera: str
    characters: tuple[str, ...]
    keyframe: Keyframe
    continue_from_previous: bool
    take_count: int = 0
    approved_take_id: int | None = None
    picture: Path | None = None  # what the storyboard shows: approved take, else newest take, else keyframe
    stale: bool = False
    last_frame: Keyframe = Keyframe("none")
    last_frame_from_next: bool = False
    keyframe_candidates: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "scene": self.scene,
            "title": self.title,
            "prompt": self.prompt,
            "duration": self.duration,
            "camera": self.camera,
            "characters": list(self.characters),
            "keyframe": self.keyframe.to_json(),
            "continue_from_previous": self.continue_from_previous,
            "takes": self.take_count,
            "approved_take_id": self.approved_take_id,
            "picture": str(self.picture) if self.picture else None,
            "stale": self.stale,
            "last_frame": self.last_frame.to_json(),
            "last_frame_from_next": self.last_frame_from_next,
            "keyframe_candidates": self.keyframe_candidates,
        }


@dataclass(frozen=True)
class TakeInfo:
    id: int
    shot_id: int
    shot_number: int
    take_number: int
    status: str
    approved: bool
    backend: str
    seed: int
    prompt: str
    width: int
    height: int
    fps: int
    num_frames: int
    params: dict[str, Any]
    timings: dict[str, Any]
    provenance: dict[str, Any]
    video_sha256: str | None
    video_path: Path | None
    thumbnail_path: Path | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    # The take of the previous shot this one started from (a shot that continues from the previous), in this data
    # directory; the id in ``provenance`` is the one where it was rendered, which may be another data directory.
    source_take_id: int | None = None

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "shot_id": self.shot_id,
            "shot_number": self.shot_number,
            "take_number": self.take_number,
            "status": self.status,
            "approved": self.approved,
            "backend": self.backend,
            "seed": self.seed,
            "prompt": self.prompt,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "params": self.params,
            "timings": self.timings,
            "provenance": self.provenance,
            "video_sha256": self.video_sha256,
            "video": str(self.video_path) if self.video_path else None,
            "thumbnail": str(self.thumbnail_path) if self.thumbnail_path else None,
            "error": self.error,
            "created_at": _when(self.created_at),
            "finished_at": _when(self.finished_at),
            "source_take_id": self.source_take_id,
        }


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list: ``items`` starting at ``offset``, out of ``total``."""

    items: tuple[T, ...]
    total: int
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total

    def to_json(self, name: str) -> dict[str, Any]:
        """The page with its items (each by its own ``to_json``) under ``name``: ``{"total", "offset", "limit",
        name: [...]}``."""
        items = [item.to_json() for item in self.items]  # type: ignore[attr-defined]
        return {"total": self.total, "offset": self.offset, "limit": self.limit, name: items}


@dataclass(frozen=True)
class TakeSummary:
    id: int
    take_number: int
    status: str
    seed: int
    backend: str
    video: Path | None
    approved: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "take_number": self.take_number,
            "status": self.status,
            "seed": self.seed,
            "backend": self.backend,
            "video": str(self.video) if self.video else None,
            "approved": self.approved,
            "error": self.error,
        }


@dataclass(frozen=True)
class ShotStatus:
    number: int
    title: str
    stale: bool
    takes: tuple[TakeSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "stale": self.stale,
            "takes": [take.to_json() for take in self.takes],
        }


@dataclass(frozen=True)
class ProjectStatus:
    project: ProjectInfo
    shot_count: int
    approved_count: int
    missing_approval: tuple[int, ...]  # shot numbers without an approved take
    takes_by_status: dict[str, int] = field(default_factory=dict)
    storyboard_seconds: float = 0.0
    approved_seconds: float = 0.0
    shots: tuple[ShotStatus, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project.to_json(),
            "shots": self.shot_count,
            "shots_approved": self.approved_count,
            "shots_missing_approval": list(self.missing_approval),
            "takes": dict(self.takes_by_status),
            "storyboard_seconds": round(self.storyboard_seconds, 3),
            "approved_seconds": round(self.approved_seconds, 3),
            "shot_takes": [shot.to_json() for shot in self.shots],
        }


@dataclass(frozen=True)
class ImportResult:
    project: ProjectInfo
    created_project: bool
    characters_added: int
    shots_added: int
    references_added: int

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project.to_json(),
            "created_project": self.created_project,
            "characters_added": self.characters_added,
            "shots_added": self.shots_added,
            "references_added": self.references_added,
        }
