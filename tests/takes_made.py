"""Takes for tests, made the way the studio makes them: queued by the render queue, rendered by a worker.

The animatic backend renders on the CPU in well under a second at test sizes, so a test that needs a finished
take gets one that went through every state a user's take goes through, never a row written by hand.
"""

from __future__ import annotations

from projects import render_queue, takes
from projects.records import TakeInfo
from projects.render_queue import RenderSettings
from projects.studio import Studio
from projects.worker import RenderWorker


def queued_takes(studio: Studio, project: str | int, shot_number: int, *, count: int = 1, seed: int = 7) -> list[int]:
    """Queue ``count`` animatic takes of one shot; their take ids."""
    jobs = render_queue.queue_renders(
        studio, project, shots=[shot_number], takes=count, seed=seed, settings=RenderSettings(backend="animatic")
    )
    return [job.take_id for job in jobs]


def finished_takes(
    studio: Studio, project: str | int, shot_number: int, *, count: int = 1, seed: int = 7
) -> list[TakeInfo]:
    """Render ``count`` animatic takes of one shot now (unscored); the finished takes."""
    ids = queued_takes(studio, project, shot_number, count=count, seed=seed)
    with RenderWorker(studio, device="cpu", score=False) as worker:
        worker.run(once=True)
    made = [takes.get_take(studio, take_id) for take_id in ids]
    assert all(take.status == "done" for take in made), [(t.id, t.status, t.error) for t in made]
    return made
