"""Waiting for renders from Python, with a progress bar: a text bar in a terminal, a widget in Jupyter.

The jobs are rendered by a worker in a thread of this process while the calling thread watches the queue and
draws the bar; if another worker already serves the device (the studio page started from the same notebook, or a
``worker`` command beside it), that worker renders them and this only watches. Interrupting the wait (Ctrl-C, or
the notebook's stop button) cancels the jobs that are not finished, so nothing keeps rendering unseen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipelines.loading import PipelineCache
from projects import render
from projects.errors import Conflict
from projects.render import JobInfo
from projects.studio import Studio
from projects.worker import RenderWorker, WorkerBusy

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
POLL_SECONDS = 0.25
RETRY_SECONDS = 2.0  # how often to check whether a busy device has become free


def progress_bar(total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A tqdm bar that draws itself as a widget under Jupyter (ipywidgets) and as text elsewhere."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=True)


def _running_text(job: JobInfo) -> str:
    text = f"shot {job.shot_number} take {job.take_number}"
    if job.stage:
        text += f": {job.stage}"
        if job.total:
            text += f" {job.step}/{job.total}"
    return text


def wait_for_jobs(
    studio: Studio,
    job_ids: Sequence[int],
    *,
    progress: bool = True,
    device: str = "cpu",
    wake: Callable[[], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
    cache: PipelineCache | None = None,
) -> list[JobInfo]:
    """Render (or watch another worker render) until every job in ``job_ids`` is finished; return them, in order.

    Other jobs queued before these may run first: the queue keeps its order. Models loaded into ``cache`` stay
    loaded afterwards, for the next wait.
    """
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return []
    states: dict[int, JobInfo] = {}

    def refresh() -> None:
        for job_id in ids:
            if job_id not in states or states[job_id].state not in FINISHED:
                states[job_id] = render.get_job(studio, job_id)

    refresh()
    stop = threading.Event()
    failure: list[BaseException] = []
    thread: threading.Thread | None = None
    bar: Any = None
    try:
        thread = _start_worker(studio, device, ids, stop, failure, cache)
        tried = time.monotonic()
        if thread is None and wake is not None:
            wake()
        bar = progress_bar(len(ids), "rendering", "take", progress)
        while True:
            refresh()
            done = sum(states[job_id].state in FINISHED for job_id in ids)
            running = [states[job_id] for job_id in ids if states[job_id].state == "running"]
            bar.n = done
            bar.set_postfix_str(_running_text(running[0]) if running else "", refresh=False)
            bar.refresh()
            if done == len(ids):
                break
            if failure:
                raise failure[0]
            waiting = any(states[job_id].state == "queued" for job_id in ids)
            if waiting and (thread is None or not thread.is_alive()) and time.monotonic() - tried >= RETRY_SECONDS:
                # Nobody renders here: the other worker stopped, or ours ran out of queue while another device's
                # worker held a job. Render here if the device is free now.
                tried = time.monotonic()
                thread = _start_worker(studio, device, ids, stop, failure, cache)
            stop.wait(poll_seconds)
    except KeyboardInterrupt:
        cancelled = _cancel_unfinished(studio, ids)
        message = f"interrupted: cancelled {cancelled} unfinished take(s)"
        if bar is not None:
            bar.write(message)
        else:
            log.warning("%s", message)
        raise
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        if bar is not None:
            bar.close()
    return [states[job_id] for job_id in ids]


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
        return all(render.get_job(studio, job_id).state in FINISHED for job_id in ids)

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
    for job_id in ids:
        job = render.get_job(studio, job_id)
        if job.state in ("queued", "running") and not job.cancel_requested:
            try:
                render.cancel_job(studio, job_id)
            except Conflict:  # it finished meanwhile: nothing to cancel
                continue
            cancelled += 1
    return cancelled
