"""Rendering a set of jobs now and waiting for them: ``render --wait`` on the command line, ``render()`` in Python.

The jobs are rendered by a worker in a thread of this process (:class:`projects.worker_thread.WorkerThread`) while
the calling thread watches the queue (and reports progress); if another worker already serves the device (the
studio page in the same process, or a ``worker`` command beside it), that worker renders them, and this one takes
over the device if that one stops first. Interrupting the wait (Ctrl-C, or
a notebook's stop button) cancels the jobs that are not finished, so nothing keeps rendering unseen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pipelines.loading import PipelineCache
from projects import render_queue
from projects.errors import Conflict
from projects.render_queue import JobInfo
from projects.studio import Studio
from projects.worker_thread import WorkerThread

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
POLL_SECONDS = 0.25


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
    thread = WorkerThread(
        studio,
        device=device,
        cache=cache,
        until=lambda: all(job.state in FINISHED for job in _current(studio, ids)),
        poll_seconds=poll_seconds,
        name=f"render-worker-{device}",
    )
    try:
        if not thread.start() and wake is not None:
            wake()  # the worker that holds the device is this process's own (the studio page's): it renders now
        while True:
            jobs = _current(studio, ids)
            if on_update is not None:
                on_update(jobs)
            if all(job.state in FINISHED for job in jobs):
                return jobs
            if thread.failure is not None:
                raise thread.failure
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        log.warning("interrupted: cancelled %d unfinished take(s)", _cancel_unfinished(studio, ids))
        raise
    finally:
        thread.stop()


def _current(studio: Studio, ids: list[int]) -> list[JobInfo]:
    found = render_queue.get_jobs(studio, ids)
    return [found[job_id] if job_id in found else render_queue.get_job(studio, job_id) for job_id in ids]


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
