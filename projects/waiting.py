"""Rendering a set of jobs now and waiting for them: ``render --wait`` on the command line, ``render()`` in Python.

The jobs are rendered by a worker in a thread of this process while the calling thread watches the queue (and
reports progress); if another worker already serves the device (the studio page in the same process, or a
``worker`` command beside it), that worker renders them and this only watches. Interrupting the wait (Ctrl-C, or
a notebook's stop button) cancels the jobs that are not finished, so nothing keeps rendering unseen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from pipelines.loading import PipelineCache
from projects import render_queue
from projects.errors import Conflict
from projects.render_queue import JobInfo
from projects.studio import Studio
from projects.worker import RenderWorker, WorkerBusy

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
POLL_SECONDS = 0.25
RETRY_SECONDS = 2.0  # how often to check whether a busy device has become free


def wait_for_jobs(
    studio: Studio,
    job_ids: Sequence[int],
    *,
    on_update: Callable[[list[JobInfo]], None] | None = None,
    device: str = "auto",
    wake: Callable[[], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
    cache: PipelineCache | None = None,
) -> list[JobInfo]:
    """Render (or watch another worker render) until every job in ``job_ids`` is finished; return them, in order.

    ``on_update`` gets the jobs as they stand at every look (a few times a second). Other jobs queued before these
    may run first: the queue keeps its order. Models loaded into ``cache`` stay loaded afterwards.
    """
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return []
    stop = threading.Event()
    failure: list[BaseException] = []
    thread: threading.Thread | None = None
    try:
        thread = _start_worker(studio, device, ids, stop, failure, cache)
        tried = time.monotonic()
        if thread is None and wake is not None:
            wake()
        while True:
            jobs = _current(studio, ids)
            if on_update is not None:
                on_update(jobs)
            if all(job.state in FINISHED for job in jobs):
                return jobs
            if failure:
                raise failure[0]
            waiting = any(job.state == "queued" for job in jobs)
            if waiting and (thread is None or not thread.is_alive()) and time.monotonic() - tried >= RETRY_SECONDS:
                # Nobody renders here: the other worker stopped, or ours ran out of queue while another device's
                # worker held a job. Render here if the device is free now.
                tried = time.monotonic()
                thread = _start_worker(studio, device, ids, stop, failure, cache)
            stop.wait(poll_seconds)
    except KeyboardInterrupt:
        log.warning("interrupted: cancelled %d unfinished take(s)", _cancel_unfinished(studio, ids))
        raise
    finally:
        stop.set()
        if thread is not None:
            thread.join()


def _current(studio: Studio, ids: list[int]) -> list[JobInfo]:
    found = render_queue.get_jobs(studio, ids)
    return [found[job_id] if job_id in found else render_queue.get_job(studio, job_id) for job_id in ids]


def _start_worker(
    studio: Studio,
    device: str,
    ids: list[int],
    stop: threading.Event,
    failure: list[BaseException],
    cache: PipelineCache | None,
) -> threading.Thread | None:
    """A render worker in a thread, or None if another worker already serves ``device`` (it will render)."""
    try:
        worker = RenderWorker(studio, device=device, cache=cache, keep_loaded=cache is not None)
    except WorkerBusy:
        log.info("a render worker already serves %s; waiting for it to render the takes", device)
        return None

    def finished() -> bool:
        return all(job.state in FINISHED for job in _current(studio, ids))

    def run() -> None:
        try:
            worker.run(once=True, stop=stop, until=finished)
        except Exception as exc:  # noqa: BLE001 -- handed to the waiting thread, which raises it
            failure.append(exc)
        finally:
            worker.close()

    thread = threading.Thread(target=run, name=f"render-worker-{device}", daemon=True)
    thread.start()
    return thread


def _cancel_unfinished(studio: Studio, ids: list[int]) -> int:
    cancelled = 0
    for job in _current(studio, ids):
        if job.state in ("queued", "running") and not job.cancel_requested:
            try:
                render_queue.cancel_job(studio, job.id)
            except Conflict:  # it finished meanwhile: nothing to cancel
                continue
            cancelled += 1
    return cancelled
