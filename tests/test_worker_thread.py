"""The render worker in a thread (the studio page's, and render-and-wait's): it waits for a busy device and takes
it over when the worker holding it stops."""

from __future__ import annotations

import time

from takes_made import queued_takes

from projects import project, storyboard, takes
from projects.studio import Studio
from projects.worker import RenderWorker
from projects.worker_thread import WorkerThread


def wait_for(condition, seconds: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def film(studio: Studio) -> int:
    made = project.create_project(studio, "Film", width=64, height=64, fps=8)
    storyboard.add_shot(studio, made.id, prompt="a lighthouse at dusk", duration=1)
    return made.id


def test_a_thread_whose_device_is_busy_renders_once_the_other_worker_stops(studio: Studio) -> None:
    film_id = film(studio)
    holder = RenderWorker(studio, device="cpu", score=False)  # a `worker` command beside the studio
    thread = WorkerThread(studio, device="cpu", retry_seconds=0.1, poll_seconds=0.1)
    try:
        assert thread.start() is False and not thread.rendering
        [take_id] = queued_takes(studio, film_id, 1)
        time.sleep(0.5)
        assert takes.get_take(studio, take_id).status == "queued"  # nobody renders: the holder is idle
        holder.close()
        wait_for(lambda: takes.get_take(studio, take_id).status == "done")
        assert thread.rendering and thread.failure is None
    finally:
        holder.close()
        thread.stop()
    assert not thread.alive and not thread.rendering
    RenderWorker(studio, device="cpu").close()  # the device is free again


def test_a_thread_with_a_free_device_renders_at_once_and_stops_when_told(studio: Studio) -> None:
    film_id = film(studio)
    thread = WorkerThread(studio, device="cpu", poll_seconds=0.1)
    try:
        assert thread.start() is True
        [take_id] = queued_takes(studio, film_id, 1)
        thread.wake()
        wait_for(lambda: takes.get_take(studio, take_id).status == "done")
    finally:
        thread.stop()
    assert not thread.alive
