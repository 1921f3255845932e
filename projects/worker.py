"""The render worker: takes jobs off the queue in order and turns each into a finished take.

One worker per device. A worker holds an exclusive lock file for its device while it lives; the operating
system releases the lock when the process dies, however it dies, so a new worker that gets the lock knows
that jobs still marked ``running`` on that device were interrupted. Those are re-queued once and failed the
second time, with the reason.

A job's life, in the order its side effects happen:

1. claim (one transaction, :func:`projects.lifecycle.claim`): job and take become ``running``;
2. resolve its pictures (:mod:`projects.take_inputs`) -- a chained shot's keyframe is the last frame of the
   previous shot's approved take (or its newest finished one), taken now, not when it was queued -- and record
   them as the take's inputs;
3. render (no transaction open), writing progress to the job row and reading its cancel flag;
4. encode the video and thumbnail into temporary files beside the media store;
5. finish (one transaction): the files are renamed into the store, the provenance written
   (:mod:`projects.provenance`), and the rows say ``done`` (:func:`projects.lifecycle.finish`).

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from pipelines.backend import Backend, BackendError, CancelToken, GenerationCancelled, GenerationResult
from pipelines.keyframes import PictureBackend
from pipelines.loading import PipelineCache, cuda_device_count, free_memory
from pipelines.registry import create_backend, create_picture_backend
from pipelines.video import EncodedTake, encode_take
from pipelines.windows import render_long
from projects import lifecycle, picture_inputs, take_inputs
from projects.backends import models_dir
from projects.errors import Conflict, InvalidInput, StudioError
from projects.provenance import generation_parameters, json_safe, picture_provenance, take_provenance
from projects.render_queue import job_info
from projects.scoring import score_finished_take
from projects.studio import Studio
from projects.take_inputs import JobFailed
from storage import media as media_rows
from storage.models import Job

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_RETRY_FIRST, DB_RETRY_MOST = 0.5, 30.0  # seconds between tries while the database cannot be written
DB_FINISH_PATIENCE = 600.0  # how long a rendered take waits for the database before it is failed

# The models a worker keeps loaded between takes; a front end that renders again and again (the Python API) keeps
# one of its own, so its models outlive each call's worker.
ModelCache = PipelineCache

DEVICE_NAME = re.compile(r"^(?:auto|cpu|cuda(?::(\d+))?)$")
PROGRESS_INTERVAL = 0.5  # seconds between progress writes


class WorkerBusy(StudioError):
    """Another worker already serves this device."""


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
        self.device = self._resolve_device(device)
        self.score = score  # consistency scores as each take finishes (see projects.scoring)
        self.cache = cache if cache is not None else PipelineCache(capacity=1)
        # With a cache of the caller's, ``keep_loaded`` leaves its models loaded at close for the next worker.
        self.keep_loaded = keep_loaded and cache is not None
        self.name = f"{socket.gethostname()}:{os.getpid()}:{self.device}"
        self._backends: dict[str, Backend] = {}
        self._lock_file = self._acquire_lock()
        self._wake = threading.Event()
        self._stop = threading.Event()  # run()'s, while it runs: ends a wait for the database
        try:
            self.recovered = self.recover()
        except BaseException:
            self.close()  # a worker that cannot start lets go of its device at once
            raise

    # The device lock and crash recovery.

    def _resolve_device(self, name: str) -> str:
        return resolve_device(name)

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
        with self.studio.write() as session:
            # Jobs recorded before devices were numbered say "cuda" for the first GPU.
            recovered = lifecycle.recover(session, {self.device, "cuda"} if self.device == "cuda:0" else {self.device})
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
        self._stop = stop or threading.Event()
        pause = DB_RETRY_FIRST
        while not self._stop.is_set():
            try:
                if until is not None and until():
                    break
                job_id = self.run_next()
            except DBAPIError as exc:  # the database is busy, locked, full or unreadable: wait, never die of it
                log.warning("the database could not be used (%s); trying again in %.0f s", _reason(exc), pause)
                self._stop.wait(pause)
                pause = min(pause * 2, DB_RETRY_MOST)
                continue
            pause = DB_RETRY_FIRST
            if job_id is not None:
                ran += 1
                continue
            if once:
                break
            self._wake.wait(poll_seconds)
            self._wake.clear()
        return ran

    def _patiently(self, what: str, write: Callable[[], T], *, give_up_after: float | None = None) -> T:
        """``write()``, tried again with growing pauses while the database cannot be written (busy past its
        timeout, locked by a long import, its disk full). Gives up when the worker is stopped, or after
        ``give_up_after`` seconds, raising the last error."""
        pause, started = DB_RETRY_FIRST, time.monotonic()
        while True:
            try:
                return write()
            except DBAPIError as exc:
                waited = time.monotonic() - started
                if self._stop.is_set() or (give_up_after is not None and waited >= give_up_after):
                    raise
                log.warning("could not %s (%s); trying again in %.0f s", what, _reason(exc), pause)
                self._stop.wait(pause)
                pause = min(pause * 2, DB_RETRY_MOST)

    def run_next(self) -> int | None:
        """Claim and render the next queued job; returns its id, or None when the queue is empty."""
        claimed = self._claim()
        if claimed is None:
            return None
        job_id, draws_picture = claimed
        if draws_picture:
            self._draw(job_id)
        else:
            self._render(job_id)
        return job_id

    def _claim(self) -> tuple[int, bool] | None:
        """The claimed job's id, and whether it draws a picture (else it renders a video take)."""
        # A database error here claimed nothing: run() waits and looks again.
        with self.studio.write() as session:
            job = lifecycle.claim(session, worker=self.name, device=self.device)
            return (job.id, job.picture_take_id is not None) if job is not None else None

    def _render(self, job_id: int) -> None:
        cancel = CancelToken()
        finished: tuple[int, Any] | None = None
        scratch = Path(tempfile.mkdtemp(prefix=self._scratch_prefix(), dir=self.studio.media.temp_dir))

        def prepare() -> tuple[Any, str, int]:
            with self.studio.write() as session:
                take = session.get(Job, job_id).take
                return take_inputs.prepare(self.studio, session, take), take.backend, take.id

        try:
            with self._failures(job_id):
                request, backend_name, take_id = self._patiently("read what the take starts from", prepare)
                result = render_long(
                    self._backend(backend_name), request, progress=self._progress(job_id, cancel), cancel=cancel
                )
                self._finish(job_id, backend_name, result, scratch)
                finished = (take_id, result.frames)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if finished is not None and self.score:
            score_finished_take(self.studio, *finished)  # best effort: the take is already done

    def _draw(self, job_id: int) -> None:
        """A picture job: resolve what it is drawn from, draw it, store and score the picture, finish."""
        cancel = CancelToken()

        def prepare() -> tuple[Any, str, int]:
            with self.studio.write() as session:
                picture = session.get(Job, job_id).picture_take
                return picture_inputs.prepare(self.studio, session, picture), picture.backend, picture.id

        with self._failures(job_id):
            request, backend_name, picture_id = self._patiently("read what the picture is drawn from", prepare)
            backend = self._picture_backend(backend_name)
            result = backend.draw(request, progress=self._progress(job_id, cancel), cancel=cancel)
            self._finish_picture(job_id, picture_id, backend_name, result)

    def _finish_picture(
        self, job_id: int, picture_id: int, backend_name: str, result: Any, *, where: tuple[str, str] | None = None
    ) -> None:
        worker, device = where or (self.name, self.device)
        buffer = io.BytesIO()
        result.image.convert("RGB").save(buffer, format="PNG")
        # Scored before it is recorded, so a candidate never shows without its scores (a picture scores in a moment).
        scores = picture_inputs.score(self.studio, picture_id, result.image) if self.score else {}

        def record() -> None:
            with self.studio.write() as session:
                job = session.get(Job, job_id)
                if job.cancel_requested:
                    raise GenerationCancelled("cancelled while the picture was being written")
                image = self.studio.store_bytes(session, buffer.getvalue(), "png")
                picture = job.picture_take
                picture.params = {
                    **picture.params,
                    "generation": json_safe(result.parameters),
                    "notes": list(result.notes),
                }
                picture.timings = {k: round(v, 4) for k, v in result.timings.items()}
                picture.provenance = picture_provenance(
                    picture, result, backend=backend_name, image=image, worker=worker, device=device
                )
                lifecycle.finish_picture(session, job, image=image, scores=scores)

        try:
            self._patiently("record the drawn picture", record, give_up_after=DB_FINISH_PATIENCE)
        except DBAPIError as exc:
            raise JobFailed(f"the picture was drawn but could not be recorded: the database {_reason(exc)}") from None
        log.info("job %s drew picture %s", job_id, picture_id)

    @contextmanager
    def _failures(self, job_id: int) -> Iterator[None]:
        """A failed job ends failed (or cancelled) with the reason in words; the worker goes on."""
        try:
            yield
        except GenerationCancelled as exc:
            self._end(job_id, "cancelled", str(exc))
        except (JobFailed, StudioError, BackendError) as exc:
            self._end(job_id, "failed", str(exc))
        except MemoryError:
            self._out_of_memory(job_id, "the computer ran out of memory")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._end(job_id, "failed", "the disk is full; free some space and retry the job")
            else:
                log.exception("job %s failed", job_id)
                self._end(job_id, "failed", f"could not write the result: {exc}")
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
                self._out_of_memory(job_id, f"the GPU ran out of memory ({exc})")
            else:
                log.exception("job %s failed", job_id)
                self._end(job_id, "failed", f"{type(exc).__name__}: {exc}")

    def _picture_backend(self, name: str) -> PictureBackend:
        key = f"picture:{name}"
        if key not in self._backends:
            self._backends[key] = create_picture_backend(
                name, models_dir=models_dir(self.studio), cache=self.cache, device=self.device
            )
        return self._backends[key]  # type: ignore[return-value]

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

    # Step 3: progress and cancel.

    def _progress(self, job_id: int, cancel: CancelToken) -> Callable[[str, int, int], None]:
        last = {"at": 0.0, "stage": None}

        def report(stage: str, step: int, total: int) -> None:
            now = time.monotonic()
            if stage == last["stage"] and now - last["at"] < PROGRESS_INTERVAL and step < total:
                return
            last["at"], last["stage"] = now, stage
            if self._write_progress(job_id, stage, step, total):
                cancel.cancel()

        return report

    def _write_progress(self, job_id: int, stage: str, step: int, total: int) -> bool:
        """Record how far a job is; True when the user asked it to stop."""
        try:
            with self.studio.write() as session:
                return lifecycle.report_progress(session, job_id, stage, step, total)
        except DBAPIError as exc:  # progress is worth no failed take: the next report tries again
            log.info("progress of job %s not recorded (%s)", job_id, _reason(exc))
            return False

    # Steps 4 and 5: the files, then the rows.

    def _finish(
        self,
        job_id: int,
        backend_name: str,
        result: GenerationResult,
        scratch: Path,
        *,
        where: tuple[str, str] | None = None,
    ) -> None:
        """Encode the take's files and record it; ``where`` is the (worker, device) that rendered it, if not this
        worker (a farm's actor)."""
        encoded = encode_take(result, scratch)
        self._record(job_id, backend_name, result, encoded, where=where)

    def _record(
        self,
        job_id: int,
        backend_name: str,
        result: GenerationResult,
        encoded: EncodedTake,
        *,
        where: tuple[str, str] | None = None,
    ) -> None:
        """Store an encoded take's files and write its rows, provenance included, in one transaction."""
        worker, device = where or (self.name, self.device)

        def record() -> None:
            with self.studio.write() as session:
                job = session.get(Job, job_id)
                if job.cancel_requested:
                    raise GenerationCancelled("cancelled while the video was being written")
                video = self.studio.store_file(session, encoded.video, "mp4")
                thumbnail = self.studio.store_file(session, encoded.thumbnail, "png")
                take = job.take
                take.params = {**take.params, "generation": generation_parameters(result), "notes": list(result.notes)}
                timings = {k: round(v, 4) for k, v in result.timings.items()}
                take.timings = {**timings, "encode": round(encoded.encode_seconds, 4)}
                take.provenance = take_provenance(
                    take,
                    result,
                    backend=backend_name,
                    video=video,
                    info=encoded.info,
                    worker=worker,
                    device=device,
                    frames_hash=encoded.frames_sha256,
                )
                lifecycle.finish(session, job, video=video, thumbnail=thumbnail, num_frames=encoded.num_frames)

        try:
            # A rendered take is worth waiting for: a busy or full database is given time to come back.
            self._patiently("record the finished take", record, give_up_after=DB_FINISH_PATIENCE)
        except DBAPIError as exc:
            raise JobFailed(f"the take was rendered but could not be recorded: the database {_reason(exc)}") from None
        log.info("job %s done (%d frames)", job_id, encoded.num_frames)

    def _end(self, job_id: int, state: str, reason: str) -> None:
        def end() -> None:
            with self.studio.write() as session:
                lifecycle.end(session, job_id, state, reason)

        try:
            self._patiently(f"mark job {job_id} {state}", end)
        except DBAPIError:  # stopped while the database was unavailable: the next worker here recovers the job
            log.warning("job %s left running: the worker stopped before the database came back", job_id)
            return
        log.info("job %s %s: %s", job_id, state, reason)

    def job(self, job_id: int) -> Any:
        with self.studio.read() as session:
            return job_info(session, session.get(Job, job_id))


def _reason(exc: DBAPIError) -> str:
    """The database's own words for an error ("database is locked", "database or disk is full")."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
