"""Progress bars for waiting on renders and exports: text in a terminal, a widget in Jupyter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from projects import render_now
from projects.render_queue import JobInfo
from projects.studio import Studio
from projects.worker import ModelCache


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
    wake: Callable[[], None] | None = None,
    cache: ModelCache | None = None,
) -> list[JobInfo]:
    """:func:`projects.render_now.wait_for_jobs` with a bar: takes finished, and the one rendering at its step."""
    bar = progress_bar(len(set(job_ids)), "rendering", "take", progress)

    def update(jobs: list[JobInfo]) -> None:
        running = [job for job in jobs if job.state == "running"]
        bar.n = sum(job.state in render_now.FINISHED for job in jobs)
        bar.set_postfix_str(_running_text(running[0]) if running else "", refresh=False)
        bar.refresh()

    try:
        return render_now.wait_for_jobs(studio, job_ids, on_update=update, wake=wake, cache=cache)
    finally:
        bar.close()
