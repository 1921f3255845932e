"""The render worker in a thread (the studio page's, and render-and-wait's): it waits for a busy device and takes
it over when the worker holding it stops."""

from __future__ import annotations

import subprocess
import sys
import time

from takes_made import queued_takes

from projects import project, storyboard, takes
from projects.studio import Studio
from projects.worker import RenderWorker
from projects.worker_thread import WorkerThread
from storage.db import BUSY_TIMEOUT_MS, DATABASE_FILE


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


LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def hold_the_database(studio: Studio, seconds: float) -> subprocess.Popen[str]:
    """Another process (a long import, say) holds the database's write lock for ``seconds``."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(studio.data_dir / DATABASE_FILE), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def test_the_worker_waits_out_a_database_locked_past_its_timeout(studio: Studio) -> None:
    held = BUSY_TIMEOUT_MS / 1000 + 1.5
    film_id = film(studio)
    [first] = queued_takes(studio, film_id, 1)
    locker = hold_the_database(studio, held)  # the worker cannot even start: its recovery must write
    thread = WorkerThread(studio, device="cpu", retry_seconds=0.2, poll_seconds=0.1)
    try:
        assert thread.start() is False
        locker.wait(timeout=60)
        wait_for(lambda: takes.get_take(studio, first).status == "done")

        locker = hold_the_database(studio, held)  # now while it waits for work: its look at the queue fails
        time.sleep(held)
        locker.wait(timeout=60)
        [second] = queued_takes(studio, film_id, 1)
        wait_for(lambda: takes.get_take(studio, second).status == "done")
        assert thread.alive and thread.rendering and thread.failure is None
    finally:
        locker.kill()
        thread.stop()
    assert not thread.alive
    RenderWorker(studio, device="cpu").close()  # and it let go of the device
