"""A finished take's (or drawn picture's) provenance: everything needed to know how it was made and to make it again.

Stored as JSON on the take: the backend and its load spec as it settled (quantization, offload, device), the
seed, the input pictures and the take it continued from (by SHA-256 and id), the frames' and the video's hashes,
peak memory, the worker and device, library versions and the studio's own version.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from pipelines.backend import GenerationResult
from pipelines.diffusion import library_versions
from pipelines.keyframes import PictureResult
from pipelines.probe import VideoInfo
from pipelines.video import frames_sha256
from storage.media import StoredFile
from storage.models import PictureTake, Take


def take_provenance(
    take: Take,
    result: GenerationResult,
    *,
    backend: str,
    video: StoredFile,
    info: VideoInfo,
    worker: str,
    device: str,
    frames_hash: str | None = None,
) -> dict[str, Any]:
    """The provenance of ``take``, rendered as ``result`` by ``backend`` on ``worker`` and stored as ``video``;
    ``frames_hash`` is the frames' hash where ``result`` no longer holds them (a take encoded where it was made)."""
    from_backend = json_safe(result.parameters.get("provenance", {}))
    return {
        "backend": backend,
        **from_backend,
        "seed": take.seed,
        "inputs": {i.role + (f"[{i.position}]" if i.role == "reference" else ""): i.sha256 for i in take.inputs},
        "source_take_id": take.source_take_id,
        "frames_sha256": frames_hash or frames_sha256(result.frames),
        "video": {"sha256": video.sha256, "codec": info.codec, "pix_fmt": info.pix_fmt},
        "peak_memory": result.peak_memory,
        "worker": worker,
        "device": from_backend.get("device", device),
        "libraries": from_backend.get("libraries") or library_versions(),
        "studio_version": studio_version(),
    }


def picture_provenance(
    picture: PictureTake, result: PictureResult, *, backend: str, image: StoredFile, worker: str, device: str
) -> dict[str, Any]:
    """The provenance of a drawn picture (a keyframe candidate or a character's view): as a take's, with the
    prompt the model was given and its input pictures by SHA-256, in the order it was given them."""
    from_backend = json_safe(result.parameters.get("provenance", {}))
    return {
        "backend": backend,
        **from_backend,
        "seed": picture.seed,
        "prompt": picture.prompt,
        "model_prompt": result.parameters.get("model_prompt"),
        "inputs": [{"role": i.role, "sha256": i.sha256, "character_id": i.character_id} for i in picture.inputs],
        "image": {"sha256": image.sha256, "width": result.image.width, "height": result.image.height},
        "peak_memory": result.peak_memory,
        "worker": worker,
        "device": from_backend.get("device", device),
        "libraries": from_backend.get("libraries") or library_versions(),
        "studio_version": studio_version(),
    }


def generation_parameters(result: GenerationResult) -> dict[str, Any]:
    """What the backend settled on (steps, guidance, frames, ...), without its provenance, as JSON."""
    return json_safe({key: value for key, value in result.parameters.items() if key != "provenance"})


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def studio_version() -> str:
    try:
        return metadata.version("continuity")
    except metadata.PackageNotFoundError:
        return "0.1.0"
