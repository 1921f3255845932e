"""The farm's actor: one per GPU (or CPU worker), on any machine of a Ray cluster (see :mod:`projects.farm`).

It loads a backend on its first job and keeps it (and its pipeline) loaded between jobs, renders, and sends the take
back encoded (:class:`RenderedTake`): its mp4 and thumbnail rather than its raw frames, without latents, with the
library versions of the machine that made it. A second thread answers :meth:`RenderActor.progress` and
:meth:`RenderActor.cancel` while a job runs (the actor is created with ``max_concurrency=2``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.backend import CancelToken, GenerationCancelled
from pipelines.video import EncodedTake, encode_take


class RenderActor:
    """Renders jobs on the device Ray gave it, keeping its backends (and their pipelines) loaded between jobs.

    ``pace_seconds`` holds each job for that long on top of the backend's own time, reporting progress and
    honouring cancel as it goes: a fixed device time per take, with which the farm's scheduling and transfers are
    measured on machines without GPUs (the benchmark and the tests).
    """

    def __init__(self, models: str | None, pace_seconds: float = 0.0) -> None:
        from pipelines.loading import PipelineCache, cuda_device_count
        from pipelines.windows import render_long  # noqa: F401 - imported once here, not in the first job's time

        # Each machine keeps its weights where its own $CONTINUITY_MODELS says, else where the studio's are.
        own = os.environ.get("CONTINUITY_MODELS")
        self.models = Path(own) if own else Path(models) if models else None
        self.pace = pace_seconds
        self.device = "cuda:0" if cuda_device_count() else "cpu"  # Ray shows an actor only its own GPUs
        self.cache = PipelineCache(capacity=1)
        self.backends: dict[str, Any] = {}
        self.now: tuple[str, int, int] = ("idle", 0, 0)
        self.cancel_token = CancelToken()

    def about(self) -> dict[str, Any]:
        import ray

        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.device,
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    def loaded(self) -> list[str]:
        return sorted(self.backends)

    def progress(self) -> tuple[str, int, int]:
        return self.now

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def render(self, kind: str, backend_name: str, request: Any, encode: bool = True) -> Any:
        """A take (``kind`` "video", through :func:`pipelines.windows.render_long`) or a picture ("picture").
        A take comes back encoded (:class:`RenderedTake`), or with ``encode`` false as its result, frames and all
        (on one machine, where Ray's shared memory carries them and the studio encodes)."""
        from pipelines.windows import render_long

        self.cancel_token = CancelToken()
        self.now = ("starting", 0, 0)

        def report(stage: str, step: int, total: int) -> None:
            self.now = (stage, step, total)

        try:
            self._hold(report)
            backend = self._backend(kind, backend_name)
            if kind == "picture":
                return _with_libraries(backend.draw(request, progress=report, cancel=self.cancel_token))
            result = _with_libraries(render_long(backend, request, progress=report, cancel=self.cancel_token))
            if not encode:
                return dataclasses.replace(result, latents=None)
            report("encode", 0, 1)
            return RenderedTake.encode(result)
        finally:
            self.now = ("idle", 0, 0)

    def _hold(self, report: Callable[[str, int, int], None]) -> None:
        if self.pace <= 0:
            return
        steps = max(1, math.ceil(self.pace / 0.05))
        for step in range(steps):
            if self.cancel_token.cancelled:
                raise GenerationCancelled(f"cancelled after {step} of {steps} steps")
            time.sleep(self.pace / steps)
            report("device", step + 1, steps)

    def _backend(self, kind: str, name: str) -> Any:
        from pipelines.registry import create_backend, create_picture_backend

        key = f"{kind}:{name}"
        if key not in self.backends:
            make = create_picture_backend if kind == "picture" else create_backend
            self.backends[key] = make(name, models_dir=self.models, cache=self.cache, device=self.device)
        return self.backends[key]


def _with_libraries(result: Any) -> Any:
    """The result with the library versions of the machine that made it in its provenance (unless it has them)."""
    from projects.provenance import library_versions

    made_by = dict(result.parameters.get("provenance") or {})
    if made_by.get("libraries"):
        return result
    made_by["libraries"] = library_versions()
    return dataclasses.replace(result, parameters={**result.parameters, "provenance": made_by})


@dataclass(frozen=True)
class RenderedTake:
    """A take as it travels back from an actor: encoded where it was made (an mp4 of a few MB rather than its raw
    frames), with the rest of its result (no frames, no latents)."""

    result: Any  # GenerationResult with an empty frames array
    video: bytes
    thumbnail: bytes
    info: Any  # pipelines.probe.VideoInfo
    frames_sha256: str
    num_frames: int
    encode_seconds: float

    @classmethod
    def encode(cls, result: Any) -> RenderedTake:
        import numpy as np

        with tempfile.TemporaryDirectory(prefix="continuity-take-") as folder:
            encoded = encode_take(result, Path(folder))
            video, thumbnail = encoded.video.read_bytes(), encoded.thumbnail.read_bytes()
        bare = dataclasses.replace(result, frames=np.empty((0, 0, 0, 3), np.uint8), latents=None)
        return cls(
            bare, video, thumbnail, encoded.info, encoded.frames_sha256, encoded.num_frames, encoded.encode_seconds
        )

    def files(self, folder: Path) -> EncodedTake:
        """The take's files written into ``folder``, as the studio stores them."""
        video, thumbnail = folder / "take.mp4", folder / "thumbnail.png"
        video.write_bytes(self.video)
        thumbnail.write_bytes(self.thumbnail)
        return EncodedTake(video, thumbnail, self.info, self.frames_sha256, self.num_frames, self.encode_seconds)
