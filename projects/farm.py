"""The render farm: the studio's queue rendered by Ray actors, one per GPU (or N CPU workers where there is none),
on this machine or across a Ray cluster.

The studio's process stays the only writer of the database and the media store. The coordinator (:class:`Farm`,
a :class:`~projects.worker.RenderWorker` that holds the data directory's ``farm`` lock instead of a device's)
claims a job, resolves its pictures and sends the actor the request (pictures by content, the backend's name, the
generation settings); the actor loads the backend once, keeps it loaded between jobs, renders, and sends the take
back: from the machines of a cluster encoded where it was made (its mp4 and thumbnail, with the frames' hash), on
this machine alone as its frames; either way with the rest of the result (timings, parameters, notes, the library
versions of the machine that made it). The coordinator stores and commits it exactly as a local worker
does; only the worker and device recorded in the take's provenance say where it was rendered
(``ray:<n>:<device>@<host>``).

Scheduling follows the story (:mod:`projects.farm_schedule`): a shot that continues from the previous one is
ready only once the take it starts from exists (the previous shot's approved take, or its newest finished one), or
when nothing of the previous shot is still queued or rendering (the job then starts from its own keyframe, or
fails saying why, as locally). Independent shots run in parallel; an idle actor is given the first ready job
whose backend it already has loaded, else the first ready job.

Faults: an actor that dies (its node lost, out of memory, killed) has its job queued again once (the local
worker's crash rule), a new actor takes its place, and the farm goes on. A coordinator killed and started again
finds the jobs it left running and queues them again the same way. Cancel reaches the actor's cancel flag;
progress is read from every busy actor and written to the job rows the page and the command line show.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pipelines.video import read_frames
from projects import lifecycle, picture_inputs, take_inputs
from projects.backends import models_dir
from projects.errors import InvalidInput, StudioError
from projects.farm_actor import RenderActor, RenderedTake
from projects.farm_schedule import ready_jobs
from projects.scoring import score_finished_take
from projects.studio import Studio
from projects.worker import PROGRESS_INTERVAL, RenderWorker
from storage.models import Job

log = logging.getLogger(__name__)

DEVICE_PREFIX = "ray:"  # the device a farm's jobs record, as ray:<actor>:<device>@<host>
POLL_SECONDS = 0.05  # how long the coordinator waits for a result before it looks at the queue again


class FarmError(StudioError):
    """The farm could not start: Ray is missing, the cluster cannot be reached, or it has no room for a worker."""


def check_settings(workers: Any, gpus_per_worker: Any) -> None:
    """How many workers (None: as many as fit) and how many GPUs each, as a farm accepts them."""
    if not isinstance(gpus_per_worker, (int, float)) or isinstance(gpus_per_worker, bool) or gpus_per_worker <= 0:
        raise InvalidInput(f"must be a number above 0, got {gpus_per_worker!r}", "gpus_per_worker")
    if not math.isfinite(gpus_per_worker):
        raise InvalidInput(f"must be a number above 0, got {gpus_per_worker!r}", "gpus_per_worker")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInput(f"must be a whole number from 1, got {workers!r}", "workers")


# The coordinator.


@dataclass
class _Worker:
    """An actor as the coordinator knows it: its handle, where it runs, and the job it is rendering."""

    index: int
    handle: Any
    device: str  # as recorded: ray:<index>:<device>@<host>
    loaded: set[str] = field(default_factory=set)
    job: int | None = None
    ref: Any = None
    kind: str = ""
    backend: str = ""
    target: int = 0  # the take or picture id
    polled: float = 0.0
    progress_ref: Any = None
    cancelling: bool = False
    lost: bool = False  # its actor died: it gets no more work, and is replaced once its job is recovered


class Farm(RenderWorker):
    """The queue rendered on Ray actors. Use as a context manager, or call :meth:`close`.

    ``address`` is a Ray cluster (``ray://HOST:10001``, ``HOST:6379`` or ``auto``); None starts Ray on this
    machine. ``workers`` is how many actors (default: one per ``gpus_per_worker`` GPUs of the cluster, or one CPU
    worker where it has no GPU). Ray already started in this process (a notebook, the tests) is used as it is.
    ``encode_on_workers`` has each take encoded where it was rendered and sent back as its mp4 (the default with an
    address: a few MB over the network rather than the raw frames); on this machine alone the frames come through
    Ray's shared memory and the studio encodes them, as a local worker does.
    """

    def __init__(
        self,
        studio: Studio,
        *,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float = 1.0,
        pace_seconds: float = 0.0,
        score: bool = True,
        encode_on_workers: bool | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        check_settings(workers, gpus_per_worker)
        self.address, self.gpus_per_worker, self.pace = address, float(gpus_per_worker), float(pace_seconds)
        self.wanted = workers
        # Takes travel encoded from the machines of a cluster; on this machine alone, as frames in shared memory.
        self.encode_on_workers = address is not None if encode_on_workers is None else bool(encode_on_workers)
        self.say = progress or (lambda line: log.info("%s", line))
        self.workers: list[_Worker] = []
        self._next_index = 0
        self._started_ray = False
        self._ray_temp: str | None = None
        self._draining = False
        super().__init__(studio, device="farm", score=score)
        try:
            self._connect()
            self._start_workers()
        except BaseException:
            self.close()
            raise

    def _resolve_device(self, name: str) -> str:
        return name  # the lock is the data directory's "farm" lock: one coordinator per studio

    def _scratch_prefix(self) -> str:
        return "render-farm-"

    def recover(self) -> list[int]:
        """Jobs a farm coordinator that died left running (any ``ray:`` device): queued again once, then failed."""
        with self.studio.read() as session:
            devices = set(
                session.scalars(
                    select(Job.device).where(Job.state == "running", Job.device.like(DEVICE_PREFIX + "%"))
                ).all()
            )
        if not devices:
            return []
        with self.studio.write() as session:
            recovered = lifecycle.recover(session, devices)
        log.warning("found %d job(s) a farm left running: %s", len(recovered), recovered)
        return recovered

    # Ray and its actors.

    def _connect(self) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is in requirements.txt
            raise FarmError("the farm needs Ray: python -m pip install 'ray[client]'") from exc
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ray.is_initialized():
            return
        try:
            if self.address is None:
                # Ray's sockets must fit a Unix path (107 bytes): a short folder of its own under /tmp.
                # This machine only: the cluster's ports listen on the loopback address, not the network.
                self._ray_temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
                ray.init(
                    include_dashboard=False,
                    log_to_driver=False,
                    _temp_dir=self._ray_temp,
                    _node_ip_address="127.0.0.1",
                )
            else:
                if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file():
                    os.environ.setdefault("RAY_AUTH_MODE", "token")  # the cluster's token, as README says
                ray.init(address=self.address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = self.address or "this machine"
            raise FarmError(f"could not start or reach Ray on {where}: {str(exc).splitlines()[0]}") from None
        self._started_ray = True

    def _start_workers(self) -> None:
        import ray

        gpus = ray.cluster_resources().get("GPU", 0.0)
        count = self.wanted or (max(1, int(gpus // self.gpus_per_worker)) if gpus else 1)
        if gpus and count * self.gpus_per_worker > gpus + 1e-9:
            raise FarmError(
                f"the cluster has {gpus:g} GPU(s): room for {int(gpus // self.gpus_per_worker)} worker(s) of "
                f"{self.gpus_per_worker:g} GPU(s), not {count}"
            )
        cpus = ray.cluster_resources().get("CPU", 0.0)
        if not gpus and count > cpus:
            raise FarmError(
                f"the cluster has no GPU and {cpus:g} CPU(s): room for {int(cpus)} CPU worker(s), not {count}"
            )
        self.workers = self._new_workers(count, timeout=300)
        self.say(f"farm: {len(self.workers)} worker(s): " + ", ".join(w.device for w in self.workers))

    def _new_workers(self, count: int, *, timeout: float) -> list[_Worker]:
        """``count`` new actors, started and named by where they run (``ray:<n>:<device>@<host>``)."""
        import ray

        gpus = ray.cluster_resources().get("GPU", 0.0)
        options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0, "max_concurrency": 2}
        options |= {"num_gpus": self.gpus_per_worker, "num_cpus": 0} if gpus else {"num_cpus": 1}
        models = models_dir(self.studio)
        actor = ray.remote(RenderActor).options(**options)
        workers = []
        for _ in range(count):
            handle = actor.remote(str(models) if models else None, self.pace)
            workers.append(_Worker(self._next_index, handle, f"{DEVICE_PREFIX}{self._next_index}"))
            self._next_index += 1
        found = ray.get([worker.handle.about.remote() for worker in workers], timeout=timeout)
        for worker, about in zip(workers, found, strict=True):
            worker.device = f"{DEVICE_PREFIX}{worker.index}:{about['device']}@{about['host']}"[:64]
        return workers

    def close(self) -> None:
        try:
            if getattr(self, "workers", None):
                import ray

                for worker in self.workers:
                    ray.kill(worker.handle)
                self.workers = []
            if getattr(self, "_started_ray", False):
                import ray

                ray.shutdown()
                self._started_ray = False
                if self._ray_temp is not None:  # its sessions' logs and sockets
                    shutil.rmtree(self._ray_temp, ignore_errors=True)
        finally:
            super().close()

    # The loop.

    def run(
        self,
        *,
        once: bool = False,
        stop: threading.Event | None = None,
        poll_seconds: float = 2.0,
        until: Callable[[], bool] | None = None,
    ) -> int:
        """Render the queue on the farm until ``stop`` is set (or, with ``once``, until nothing is queued or
        rendering). Returns how many jobs ended (done, failed or cancelled)."""
        self._stop = stop or threading.Event()
        ended = 0
        idle_since = time.monotonic()
        while not self._stop.is_set():
            if until is not None and until():
                break
            dispatched = self._dispatch()
            collected = self._collect()
            ended += collected
            self._poll_progress()
            busy = any(w.job is not None for w in self.workers)
            if busy or dispatched or collected:  # a take that ended may have made the next one ready
                idle_since = time.monotonic()
                continue
            if once and not self._queued():
                break
            if once and time.monotonic() - idle_since > 30:
                break  # queued jobs that no worker can start (never expected: see ready_jobs)
            self._wake.wait(min(poll_seconds, 0.5))
            self._wake.clear()
        return ended + self._drain()

    def _drain(self) -> int:
        """After a stop: no new jobs, and the takes being rendered are finished and stored."""
        self._draining = True
        ended = 0
        try:
            while any(w.job is not None for w in self.workers):
                ended += self._collect()
                self._poll_progress()
        finally:
            self._draining = False
        return ended

    def _queued(self) -> bool:
        with self.studio.read() as session:
            return session.scalar(select(Job.id).where(Job.state == "queued").limit(1)) is not None

    def _dispatch(self) -> int:
        """Give every idle worker a ready job; returns how many were given."""
        given = 0
        if self._draining:
            return 0
        for worker in self.workers:
            if worker.job is not None or worker.lost:
                continue
            claimed = self._patiently("claim a job for the farm", lambda w=worker: self._claim_for(w))
            if claimed is None:
                break
            job_id, kind, backend, target, request = claimed
            worker.job, worker.kind, worker.backend, worker.target = job_id, kind, backend, target
            worker.cancelling, worker.polled = False, time.monotonic()
            if request is None:  # resolving its pictures failed it already
                worker.job = None
                continue
            worker.ref = worker.handle.render.remote(kind, backend, request, self.encode_on_workers)
            worker.loaded.add(f"{kind}:{backend}")
            given += 1
        return given

    def _claim_for(self, worker: _Worker) -> tuple[int, str, str, int, Any] | None:
        with self.studio.write() as session:
            ready = ready_jobs(session)
            if not ready:
                return None

            def key(job: Job) -> str:
                return f"picture:{job.picture_take.backend}" if job.take_id is None else f"video:{job.take.backend}"

            chosen = next((job for job in ready if key(job) in worker.loaded), ready[0])
            job = lifecycle.claim(session, worker=self.name, device=worker.device, job_id=chosen.id)
            assert job is not None
            kind, backend = key(job).split(":", 1)
            try:
                if kind == "picture":
                    request = picture_inputs.prepare(self.studio, session, job.picture_take)
                    target = job.picture_take_id
                else:
                    request = take_inputs.prepare(self.studio, session, job.take)
                    target = job.take_id
            except (take_inputs.JobFailed, StudioError) as exc:
                lifecycle.end(session, job.id, "failed", str(exc))
                return job.id, kind, backend, 0, None
            return job.id, kind, backend, target, request

    def _collect(self) -> int:
        """Store what the workers finished; returns how many jobs ended.

        A worker whose take came back is given its next job before the take is encoded and stored, and between
        two stores the coordinator looks again for workers that finished meanwhile: the devices never wait on the
        studio's storing, which is the one thing done in turn.
        """
        pending: list[tuple[_Worker, Any, str, str, int, tuple[str, Any]]] = []
        self._gather(pending, POLL_SECONDS)
        ended = 0
        while pending:
            self._store(*pending.pop(0))
            ended += 1
            self._gather(pending, 0)
        return ended

    def _gather(self, pending: list, timeout: float) -> None:
        """Fetch the results of workers that finished (waiting up to ``timeout``), free them and give them work."""
        import ray

        busy = {w.ref: w for w in self.workers if w.ref is not None}
        if not busy:
            return
        done, _ = ray.wait(list(busy), num_returns=len(busy), timeout=timeout)
        for ref in done:
            worker = busy[ref]
            outcome = self._fetch(ref)
            pending.append((worker, worker.job, worker.kind, worker.backend, worker.target, outcome))
            worker.job = worker.ref = worker.progress_ref = None
            worker.lost = outcome[0] == "lost"
        if done:
            self._dispatch()

    def _fetch(self, ref: Any) -> tuple[str, Any]:
        """A finished call's result (``result``), the job's own error (``error``) or the actor's death (``lost``)."""
        import ray

        try:
            return "result", ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            return "lost", exc
        except ray.exceptions.RayTaskError as exc:
            return "error", exc.as_instanceof_cause()
        except ray.exceptions.RayError as exc:  # its node or its result lost: as a lost worker, queued again once
            return "lost", exc

    def _store(self, worker: _Worker, job_id: Any, kind: str, backend: str, target: int, outcome: Any) -> None:
        what, result = outcome
        if what == "lost":
            self._lost(worker, job_id, result)
            return
        if what == "error":
            with self._failures(job_id):
                raise result
            return
        finished = None
        where = (f"{self.name}/{worker.device}", worker.device)
        scratch = Path(tempfile.mkdtemp(prefix=self._scratch_prefix(), dir=self.studio.media.temp_dir))
        try:
            with self._failures(job_id):
                if kind == "picture":
                    self._finish_picture(job_id, target, backend, result, where=where)
                else:
                    if isinstance(result, RenderedTake):
                        encoded = result.files(scratch)
                        frames = read_frames(encoded.video) if self.score else None  # before the store takes it
                        self._record(job_id, backend, result.result, encoded, where=where)
                    else:
                        frames = result.frames if self.score else None
                        self._finish(job_id, backend, result, scratch, where=where)
                    finished = (target, frames)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if finished is not None and finished[1] is not None:
            score_finished_take(self.studio, *finished)

    def _lost(self, worker: _Worker, job_id: int, exc: Exception) -> None:
        """An actor died: its job is queued again once (then failed), and a new actor takes its place."""
        log.warning("farm worker %s died while rendering job %s: %s", worker.device, job_id, exc)
        with self.studio.write() as session:
            lifecycle.recover(session, {worker.device})
        self.say(f"farm: {worker.device} was lost during job {job_id}; the job is queued again once")
        self.workers.remove(worker)
        try:
            import ray

            ray.kill(worker.handle)  # dead already, or alive with its result lost: either way it gives back its GPU
            self.workers += self._new_workers(1, timeout=120)
        except Exception as error:  # noqa: BLE001 - the cluster has no room now: the farm goes on with the others
            log.warning("no replacement for %s: %s", worker.device, error)
        if not self.workers:
            raise FarmError("every farm worker was lost; start the farm again when the cluster has room")

    def _poll_progress(self) -> None:
        """Copy each busy worker's progress to its job, and pass a cancel on to the worker."""
        import ray

        now = time.monotonic()
        for worker in self.workers:
            if worker.job is None:
                continue
            if worker.progress_ref is not None:
                ready, _ = ray.wait([worker.progress_ref], timeout=0)
                if not ready:
                    continue
                try:
                    stage, step, total = ray.get(worker.progress_ref)
                except ray.exceptions.RayError:
                    worker.progress_ref = None
                    continue
                worker.progress_ref = None
                if stage not in ("idle", "starting"):
                    cancel = self._write_progress(worker.job, stage, step, total)
                    if cancel and not worker.cancelling:
                        worker.cancelling = True
                        worker.handle.cancel.remote()
            if now - worker.polled >= PROGRESS_INTERVAL:
                worker.polled = now
                worker.progress_ref = worker.handle.progress.remote()

    def kill_worker(self, index: int) -> None:
        """Kill one actor as a lost node would (for drills and tests): its job is recovered on the next look."""
        import ray

        ray.kill(next(w for w in self.workers if w.index == index).handle, no_restart=True)
