"""The render worker: takes jobs off the queue in order and turns each into a finished take.

One worker per device. A worker holds an exclusive lock file for its device while it lives; the operating
system releases the lock when the process dies, however it dies, so a new worker that gets the lock knows
that jobs still marked ``running`` on that device were interrupted. Those are re-queued once and failed the
second time, with the reason.

A job's life, in the order its side effects happen:

1. claim (one transaction): job and take become ``running``;
2. resolve its pictures -- a chained shot's keyframe is the last frame of the previous shot's approved take
   (or its newest finished one), taken now, not when it was queued -- and record them as the take's inputs;
3. render (no transaction open), writing progress to the job row and reading its cancel flag;
4. encode the video and thumbnail into temporary files beside the media store;
5. finish (one transaction): the files are renamed into the store, then the rows say ``done``.

Any failure fails only that job (an out-of-memory error also unloads the models) and the worker goes on.
"""

from __future__ import annotations

import errno
import fcntl
import io
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select

from pipelines.backend import (
    Backend,
    BackendError,
    CancelToken,
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
)
from pipelines.diffusion import library_versions
from pipelines.loading import PipelineCache, cuda_device_count, free_memory
from pipelines.registry import create_backend
from pipelines.video import frames_sha256, last_frame, write_mp4, write_thumbnail
from pipelines.windows import render_long
from projects.backends import models_dir
from projects.errors import Conflict, InvalidInput, StudioError
from projects.render import RenderSettings, job_info
from projects.scoring import score_finished_take
from projects.studio import Studio
from projects.takes import refresh_stale, source_take_for
from storage import media as media_rows
from storage.models import Job, MediaObject, Shot, Take, TakeInput, utcnow

log = logging.getLogger(__name__)

# The models a worker keeps loaded between takes; a front end that renders again and again (the Python API) keeps
# one of its own, so its models outlive each call's worker.
ModelCache = PipelineCache

MAX_ATTEMPTS = 2  # a job interrupted twice is failed, not retried forever
DEVICE_NAME = re.compile(r"^(?:auto|cpu|cuda(?::(\d+))?)$")
PROGRESS_INTERVAL = 0.5  # seconds between progress writes


class WorkerBusy(StudioError):
    """Another worker already serves this device."""


class JobFailed(Exception):
    """A job could not be rendered; the message is shown to the user as the take's error."""


@dataclass(frozen=True)
class Inputs:
    keyframe: tuple[str, str] | None  # (sha256, extension)
    last_frame: tuple[str, str] | None
    references: tuple[tuple[str, str, int | None], ...]  # (sha256, extension, character id)
    source_take_id: int | None


def resolve_device(name: str) -> str:
    """The device a worker renders on, named as its lock is: ``cpu`` or ``cuda:N``.

    ``auto`` is the first GPU where there is one, else the CPU; ``cuda`` is ``cuda:0``. So two workers that would
    share a GPU ask for the same lock, whatever they were called with, and ``cuda:1`` can pick the second GPU.
    """
    match = DEVICE_NAME.match(name or "")
    if match is None:
        raise InvalidInput(f"must be cpu, cuda, cuda:N or auto, got {name!r}", "device")
    if name == "cpu":
        return "cpu"
    count = cuda_device_count()
    if name == "auto":
        return "cuda:0" if count else "cpu"
    index = int(match[1] or 0)
    if not count:
        raise Conflict(f"there is no CUDA GPU here for device {name}; render on cpu (or auto)")
    if index >= count:
        raise Conflict(f"this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; there is no {name}")
    return f"cuda:{index}"


class RenderWorker:
    """Runs the queue on one device. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        studio: Studio,
        *,
        device: str = "auto",
        cache: PipelineCache | None = None,
        score: bool = True,
        keep_loaded: bool = False,
    ) -> None:
        self.studio = studio
        self.device = resolve_device(device)
        self.score = score  # consistency scores as each take finishes (see projects.scoring)
        self.cache = cache if cache is not None else PipelineCache(capacity=1)
        # With a cache of the caller's, ``keep_loaded`` leaves its models loaded at close for the next worker.
        self.keep_loaded = keep_loaded and cache is not None
        self.name = f"{socket.gethostname()}:{os.getpid()}:{self.device}"
        self._backends: dict[str, Backend] = {}
        self._lock_file = self._acquire_lock()
        self._wake = threading.Event()
        self.recovered = self.recover()

    # The device lock and crash recovery.

    def _acquire_lock(self) -> Any:
        folder = self.studio.data_dir / "workers"
        folder.mkdir(exist_ok=True)
        handle = (folder / f"{self.device.replace(':', '-')}.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise WorkerBusy(
                f"another render worker is already running for device {self.device} on this data directory; "
                "stop it first, or queue renders and let it take them"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(self.name)
        handle.flush()
        return handle

    def close(self) -> None:
        if not self.keep_loaded:
            for backend in self._backends.values():
                backend.unload()
            self.cache.unload()
        self._backends.clear()
        if self._lock_file is not None:
            with suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scratch_prefix(self) -> str:
        return f"render-{self.device.replace(':', '-')}-"

    def recover(self) -> list[int]:
        """Jobs left ``running`` on this device by a worker that died: re-queued once, then failed.

        The dead worker's half-written files (its scratch folders) are removed too: holding the device lock,
        nothing else writes there. So are stored files no row names, once they are an hour old.
        """
        for leftover in self.studio.media.temp_dir.glob(self._scratch_prefix() + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
        with self.studio.read() as session:
            # A worker killed between renaming a take's video into the store and committing its row leaves a
            # complete file that no row names; once it is old enough not to be anyone's write in progress, it goes.
            media_rows.remove_unrecorded_files(session, self.studio.media)
        recovered = []
        with self.studio.write() as session:
            # Jobs recorded before devices were numbered say "cuda" for the first GPU.
            names = {self.device, "cuda"} if self.device == "cuda:0" else {self.device}
            stuck = session.scalars(select(Job).where(Job.state == "running", Job.device.in_(names))).all()
            for job in stuck:
                take = job.take
                session.execute(TakeInput.__table__.delete().where(TakeInput.take_id == take.id))
                if job.cancel_requested:
                    reason = "cancelled (the worker stopped before it could finish cancelling)"
                    job.state, job.error, job.finished_at = "cancelled", reason, utcnow()
                    take.status, take.error, take.finished_at = "cancelled", reason, utcnow()
                elif job.attempts < MAX_ATTEMPTS:
                    job.state, job.cancel_requested = "queued", False
                    job.progress_stage, job.progress_step, job.progress_total = "", 0, 0
                    job.error = "the worker stopped while rendering this take; it was queued again"
                    take.status, take.started_at = "queued", None
                else:
                    reason = (
                        f"the worker stopped {job.attempts} times while rendering this take (killed, or out of "
                        "memory); retry it to try again"
                    )
                    job.state, job.error, job.finished_at = "failed", reason, utcnow()
                    take.status, take.error, take.finished_at = "failed", reason, utcnow()
                recovered.append(job.id)
        if recovered:
            log.warning("found %d interrupted job(s) on %s: %s", len(recovered), self.device, recovered)
        return recovered

    # Running the queue.

    def wake(self) -> None:
        """Tell a waiting :meth:`run` that jobs were queued (from the same process)."""
        self._wake.set()

    def run(
        self,
        *,
        once: bool = False,
        stop: threading.Event | None = None,
        poll_seconds: float = 2.0,
        until: Callable[[], bool] | None = None,
    ) -> int:
        """Render jobs until ``stop`` is set (or, with ``once``, until the queue is empty). Returns how many ran.

        When the queue is empty the worker sleeps on an event: :meth:`wake` (same process) ends the wait at
        once; jobs queued by another process are seen within ``poll_seconds``.
        """
        ran = 0
        while not (stop is not None and stop.is_set()):
            if until is not None and until():
                break
            if self.run_next() is not None:
                ran += 1
                continue
            if once:
                break
            self._wake.wait(poll_seconds)
            self._wake.clear()
        return ran

    def run_next(self) -> int | None:
        """Claim and render the next queued job; returns its id, or None when the queue is empty."""
        job_id = self._claim()
        if job_id is None:
            return None
        self._render(job_id)
        return job_id

    def _claim(self) -> int | None:
        with self.studio.write() as session:
            job = session.scalars(
                select(Job).where(Job.state == "queued").order_by(Job.priority.desc(), Job.position).limit(1)
            ).first()
            if job is None:
                return None
            now = utcnow()
            job.state, job.attempts, job.started_at, job.heartbeat_at = "running", job.attempts + 1, now, now
            job.worker, job.device, job.error, job.finished_at = self.name, self.device, None, None
            job.progress_stage, job.progress_step, job.progress_total = "starting", 0, 0
            job.take.status, job.take.started_at, job.take.error = "running", now, None
            return job.id

    def _render(self, job_id: int) -> None:
        cancel = CancelToken()
        finished: tuple[int, Any] | None = None
        scratch = Path(tempfile.mkdtemp(prefix=self._scratch_prefix(), dir=self.studio.media.temp_dir))
        try:
            request, backend_name, take_id = self._prepare(job_id)
            backend = self._backend(backend_name)
            result = render_long(backend, request, progress=self._progress(job_id, cancel), cancel=cancel)
            self._finish(job_id, take_id, request, backend_name, result, scratch)
            finished = (take_id, result.frames)
        except GenerationCancelled as exc:
            self._end(job_id, "cancelled", str(exc))
        except JobFailed as exc:
            self._end(job_id, "failed", str(exc))
        except (StudioError, BackendError) as exc:
            self._end(job_id, "failed", str(exc))
        except MemoryError:
            self._out_of_memory(job_id, "the computer ran out of memory")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._end(job_id, "failed", "the disk is full; free some space and retry the job")
            else:
                log.exception("job %s failed", job_id)
                self._end(job_id, "failed", f"could not write the take: {exc}")
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
                self._out_of_memory(job_id, f"the GPU ran out of memory ({exc})")
            else:
                log.exception("job %s failed", job_id)
                self._end(job_id, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if finished is not None and self.score:
            score_finished_take(self.studio, *finished)  # best effort: the take is already done

    def _out_of_memory(self, job_id: int, reason: str) -> None:
        for backend in self._backends.values():
            backend.unload()
        self.cache.unload()
        free_memory()
        self._end(job_id, "failed", f"{reason}; try a smaller size, fewer frames, or a lower memory profile")

    def _backend(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = create_backend(
                name, models_dir=models_dir(self.studio), cache=self.cache, device=self.device
            )
        return self._backends[name]

    # Step 2: the pictures a take starts from.

    def _prepare(self, job_id: int) -> tuple[GenerationRequest, str, int]:
        with self.studio.write() as session:
            job = session.get(Job, job_id)
            take = job.take
            shot = take.shot
            settings = RenderSettings.from_params(take.params.get("settings", {}))
            pinned = take.params.get("pinned_inputs")
            inputs = self._pinned(session, pinned) if pinned else self._resolve(session, shot, take)
            take.source_take_id = inputs.source_take_id
            session.execute(TakeInput.__table__.delete().where(TakeInput.take_id == take.id))
            if inputs.keyframe:
                session.add(TakeInput(take_id=take.id, role="keyframe", position=0, sha256=inputs.keyframe[0]))
            if inputs.last_frame:
                session.add(TakeInput(take_id=take.id, role="last_frame", position=0, sha256=inputs.last_frame[0]))
            for position, (sha256, _ext, character_id) in enumerate(inputs.references):
                session.add(
                    TakeInput(
                        take_id=take.id, role="reference", position=position, sha256=sha256, character_id=character_id
                    )
                )
            take.params = {**take.params, "requested_frames": take.params.get("requested_frames", take.num_frames)}
            request = GenerationRequest(
                prompt=take.prompt,
                width=take.width,
                height=take.height,
                fps=take.fps,
                num_frames=take.params["requested_frames"],
                seed=take.seed,
                keyframe=self._image(inputs.keyframe),
                last_frame=self._image(inputs.last_frame),
                references=tuple(self._image((sha, ext)) for sha, ext, _ in inputs.references),
                negative_prompt=settings.negative_prompt,
                camera=take.params.get("camera", shot.camera),
                steps=settings.steps,
                guidance=settings.guidance,
                refiner=settings.refiner_settings(),
                caption=take.params.get("title", "") if settings.caption else "",
            )
            return request, take.backend, take.id

    def _resolve(self, session: Any, shot: Shot, take: Take) -> Inputs:
        keyframe: tuple[str, str] | None = None
        source_take_id = None
        if shot.continue_from_previous and shot.position > 1:
            source = source_take_for(session, shot)
            if source is not None:
                keyframe = self._last_frame_of(session, source)
                source_take_id = source.id
            elif shot.keyframe_sha256 is None and shot.keyframe_character_id is None:
                raise JobFailed(
                    f"shot {shot.position} continues from shot {shot.position - 1}, which has no finished take yet; "
                    f"render shot {shot.position - 1} first"
                )
        if keyframe is None and shot.keyframe is not None:
            keyframe = (shot.keyframe.sha256, shot.keyframe.extension)
        if keyframe is None and shot.keyframe_character is not None and shot.keyframe_character.references:
            ref = shot.keyframe_character.references[0]
            keyframe = (ref.sha256, ref.media.extension)
        references: list[tuple[str, str, int | None]] = []
        capacity = self._capabilities(take.backend).reference_images
        for character in shot.characters:
            if len(references) >= capacity:
                break
            if character.references:
                ref = character.references[0]
                references.append((ref.sha256, ref.media.extension, character.id))
        return Inputs(keyframe, None, tuple(references), source_take_id)

    def _pinned(self, session: Any, pinned: dict[str, Any]) -> Inputs:
        """The exact pictures of the take being rendered again."""
        by_role: dict[str, list[dict[str, Any]]] = {}
        for item in pinned.get("inputs", []):
            by_role.setdefault(item["role"], []).append(item)

        def media(sha256: str) -> tuple[str, str]:
            row = session.get(MediaObject, sha256)
            if row is None:
                raise JobFailed(f"an input picture of the original take ({sha256[:12]}) is no longer stored")
            return row.sha256, row.extension

        keyframe = media(by_role["keyframe"][0]["sha256"]) if by_role.get("keyframe") else None
        last = media(by_role["last_frame"][0]["sha256"]) if by_role.get("last_frame") else None
        refs = tuple(
            (*media(item["sha256"]), item.get("character_id"))
            for item in sorted(by_role.get("reference", []), key=lambda item: item["position"])
        )
        return Inputs(keyframe, last, refs, pinned.get("source_take_id"))

    def _last_frame_of(self, session: Any, source: Take) -> tuple[str, str]:
        video = source.video
        if video is None:
            raise JobFailed(f"take {source.id} has no video to continue from")
        path = self.studio.media.path_for(video.sha256, video.extension)
        problem = self.studio.media.check(video.sha256, video.extension)
        if problem:
            raise JobFailed(f"the video of take {source.id}, which this shot continues from, is {problem}")
        frame = last_frame(path)
        buffer = io.BytesIO()
        frame.save(buffer, format="PNG")
        stored = self.studio.media.put_bytes(buffer.getvalue(), "png")
        session.info.setdefault("stored_media", []).append(stored)
        media_rows.register(session, stored)
        return stored.sha256, stored.extension

    def _image(self, media: tuple[str, str] | None) -> Image.Image | None:
        if media is None:
            return None
        sha256, extension = media
        with Image.open(self.studio.media.path_for(sha256, extension)) as image:
            loaded = image.convert("RGB")
        loaded.info["sha256"] = sha256
        return loaded

    def _capabilities(self, backend: str) -> Any:
        from pipelines.registry import backend_class

        return backend_class(backend).capabilities

    # Step 3: progress and cancel.

    def _progress(self, job_id: int, cancel: CancelToken) -> Callable[[str, int, int], None]:
        last = {"at": 0.0, "stage": None}

        def report(stage: str, step: int, total: int) -> None:
            now = time.monotonic()
            if stage == last["stage"] and now - last["at"] < PROGRESS_INTERVAL and step < total:
                return
            last["at"], last["stage"] = now, stage
            with self.studio.write() as session:
                job = session.get(Job, job_id)
                job.progress_stage, job.progress_step, job.progress_total = stage, step, total
                job.heartbeat_at = utcnow()
                if job.cancel_requested:
                    cancel.cancel()

        return report

    # Steps 4 and 5: the files, then the rows.

    def _finish(
        self,
        job_id: int,
        take_id: int,
        request: GenerationRequest,
        backend_name: str,
        result: GenerationResult,
        scratch: Path,
    ) -> None:
        frames = result.frames
        video_path = scratch / "take.mp4"
        thumb_path = scratch / "thumbnail.png"
        encode_start = time.perf_counter()
        info = write_mp4(frames, result.fps, video_path)
        write_thumbnail(frames[len(frames) // 2], thumb_path)
        encode_seconds = time.perf_counter() - encode_start
        parameters = dict(result.parameters)
        backend_provenance = parameters.pop("provenance", {})
        with self.studio.write() as session:
            job = session.get(Job, job_id)
            take = session.get(Take, take_id)
            if job.cancel_requested:
                raise GenerationCancelled("cancelled while the video was being written")
            video = self.studio.media.put_file(video_path, "mp4")
            thumb = self.studio.media.put_file(thumb_path, "png")
            session.info.setdefault("stored_media", []).extend([video, thumb])
            media_rows.register(session, video)
            media_rows.register(session, thumb)
            take.video_sha256, take.thumbnail_sha256 = video.sha256, thumb.sha256
            take.status, take.finished_at, take.error = "done", utcnow(), None
            take.num_frames = int(frames.shape[0])
            take.params = {**take.params, "generation": _json_safe(parameters), "notes": list(result.notes)}
            take.timings = {**{k: round(v, 4) for k, v in result.timings.items()}, "encode": round(encode_seconds, 4)}
            take.provenance = {
                "backend": backend_name,
                **_json_safe(backend_provenance),
                "seed": take.seed,
                "inputs": {
                    i.role + (f"[{i.position}]" if i.role == "reference" else ""): i.sha256 for i in take.inputs
                },
                "source_take_id": take.source_take_id,
                "frames_sha256": frames_sha256(frames),
                "video": {"sha256": video.sha256, "codec": info.codec, "pix_fmt": info.pix_fmt},
                "peak_memory": result.peak_memory,
                "worker": self.name,
                "device": backend_provenance.get("device", self.device),
                "libraries": backend_provenance.get("libraries") or library_versions(),
                "studio_version": _studio_version(),
            }
            job.state, job.finished_at = "done", utcnow()
            job.progress_stage, job.progress_step, job.progress_total = "done", 1, 1
            refresh_stale(session, take.shot)
        log.info("job %s: take %s done (%d frames)", job_id, take_id, frames.shape[0])

    def _end(self, job_id: int, state: str, reason: str) -> None:
        with self.studio.write() as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            job.state, job.error, job.finished_at = state, reason, utcnow()
            job.take.status, job.take.error, job.take.finished_at = state, reason, utcnow()
        log.info("job %s %s: %s", job_id, state, reason)

    def job(self, job_id: int) -> Any:
        with self.studio.read() as session:
            return job_info(session, session.get(Job, job_id))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _studio_version() -> str:
    try:
        return metadata.version("continuity")
    except metadata.PackageNotFoundError:
        return "0.1.0"
