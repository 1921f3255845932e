"""The queue as cards: pictures, progress, time left, the night's totals, and reordering by clicking."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.panels.queue import cards_html, job_html
from projects import project as projects
from projects import render_queue, storyboard
from projects.errors import Conflict, InvalidInput
from projects.queue_cards import queue_cards
from projects.studio import Studio
from projects.worker import RenderWorker
from storage.models import Job, utcnow


def make(studio: Studio, shots: int = 3) -> None:
    projects.create_project(studio, "Harbour", width=96, height=64, fps=8)
    for number in range(1, shots + 1):
        storyboard.add_shot(studio, "Harbour", title=f"Pier {number}", prompt=f"beat {number}", duration=1.0)


def waiting(studio: Studio) -> list[int]:
    return [job.id for job in render_queue.list_jobs(studio, "Harbour", states=["queued"])]


def test_cards_carry_pictures_progress_time_left_and_totals(studio: Studio) -> None:
    make(studio)
    first = render_queue.queue_renders(studio, "Harbour", shots=[1], takes=2)
    with RenderWorker(studio) as worker:
        worker.run(once=True)
    running, queued = render_queue.queue_renders(studio, "Harbour", shots=[2, 3], takes=1)
    with studio.write() as session:
        job = session.get(Job, running.id)
        job.state, job.progress_stage, job.progress_step, job.progress_total = "running", "backbone", 3, 12
        job.started_at = utcnow() - timedelta(seconds=9)
        job.take.status = "running"

    found = queue_cards(studio, "Harbour")
    by_id = {card.job.id: card for card in found.jobs}

    assert [card.job.state for card in found.jobs] == ["running", "queued", "done", "done"]
    assert all(by_id[job.id].picture is not None and by_id[job.id].picture.is_file() for job in first)
    assert 25 <= by_id[running.id].seconds_left <= 29  # 9 s for 3 steps: about 27 s for the last 9
    assert by_id[queued.id].seconds_left is None
    totals = found.totals
    assert (totals["running"], totals["queued"], totals["done"], totals["failed"]) == (1, 1, 2, 0)
    assert totals["seconds_per_take"] is not None and totals["seconds_per_take"] >= 0
    assert totals["seconds_to_go"] == round(by_id[running.id].seconds_left + totals["seconds_per_take"])

    page = cards_html(found)
    assert "backbone 3/12" in page and 'style="width:25%"' in page
    assert f'id="queue-job-{queued.id}"' in page and "about " in page and " to go" in page
    running_card = job_html(by_id[running.id])
    assert 'data-action="cancel"' in running_card and 'data-action="up"' not in running_card
    queued_card = job_html(by_id[queued.id])
    assert all(f'data-action="{a}"' in queued_card for a in ("cancel", "next", "up", "down"))
    assert 'data-action="retry"' not in job_html(by_id[first[0].id])


def test_a_failed_job_shows_its_error_escaped_and_can_be_retried(studio: Studio) -> None:
    make(studio, shots=1)
    (job,) = render_queue.queue_renders(studio, "Harbour", takes=1)
    with studio.write() as session:
        row = session.get(Job, job.id)
        row.state, row.error = "failed", "<script>boom</script> out of memory"
        row.take.status = "failed"

    card = job_html(queue_cards(studio, "Harbour").jobs[0])

    assert "&lt;script&gt;boom&lt;/script&gt; out of memory" in card and "<script>" not in card
    assert 'data-action="retry"' in card and 'data-action="cancel"' not in card


def test_jobs_move_up_down_and_to_the_front_by_clicking(studio: Studio) -> None:
    make(studio, shots=4)
    jobs = [job.id for job in render_queue.queue_renders(studio, "Harbour", takes=1)]
    a, b, c, d = jobs
    assert waiting(studio) == [a, b, c, d]

    render_queue.nudge_job(studio, c, "Harbour", "up")
    assert waiting(studio) == [a, c, b, d]
    render_queue.nudge_job(studio, a, "Harbour", "down")
    assert waiting(studio) == [c, a, b, d]
    render_queue.nudge_job(studio, b, "Harbour", "down")  # one before the end: it becomes the last
    assert waiting(studio) == [c, a, d, b]
    render_queue.nudge_job(studio, b, "Harbour", "down")  # already last: stays
    render_queue.nudge_job(studio, c, "Harbour", "up")  # already first: stays
    assert waiting(studio) == [c, a, d, b]
    render_queue.nudge_job(studio, d, "Harbour", "first")
    assert waiting(studio) == [d, c, a, b]

    with pytest.raises(InvalidInput, match="must be first, up or down"):
        render_queue.nudge_job(studio, d, "Harbour", "sideways")
    render_queue.cancel_job(studio, a)
    with pytest.raises(Conflict, match=f"job {a} is cancelled, not waiting"):
        render_queue.nudge_job(studio, a, "Harbour", "up")
    assert waiting(studio) == [d, c, b]
