"""The life of a take and its job (projects/lifecycle.py), on a real SQLite file, and that it is the only place
where a job's state or a take's status changes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import select
from takes_made import queued_takes

from projects import lifecycle, project, render_queue, storyboard, takes
from projects.errors import Conflict
from projects.studio import Studio
from projects.worker import RenderWorker
from storage.models import Job, Take

ROOT = Path(__file__).resolve().parent.parent


def film(studio: Studio) -> int:
    made = project.create_project(studio, "Film", width=64, height=64, fps=8)
    storyboard.add_shot(studio, made.id, prompt="a lighthouse at dusk", duration=1)
    return made.id


def states(studio: Studio, take_id: int) -> tuple[str, str]:
    with studio.read() as session:
        job = session.scalar(select(Job).where(Job.take_id == take_id))
        return job.state, job.take.status


def test_a_take_moves_from_queued_to_done_with_its_job(studio: Studio) -> None:
    [take_id] = queued_takes(studio, film(studio), 1)
    assert states(studio, take_id) == ("queued", "queued")

    with studio.write() as session:
        job = lifecycle.claim(session, worker="here", device="cpu")
        assert job is not None and job.take_id == take_id
    assert states(studio, take_id) == ("running", "running")
    with studio.write() as session:
        assert lifecycle.claim(session, worker="here", device="cpu") is None  # nothing else is queued

    with studio.write() as session:
        assert lifecycle.report_progress(session, job.id, "denoising", 3, 8) is False
    with studio.read() as session:
        job = session.get(Job, job.id)
        assert (job.progress_stage, job.progress_step, job.progress_total) == ("denoising", 3, 8)


def test_the_worker_takes_a_queued_take_to_done(studio: Studio) -> None:
    [take_id] = queued_takes(studio, film(studio), 1)
    with RenderWorker(studio, device="cpu", score=False) as worker:
        assert worker.run(once=True) == 1
    assert states(studio, take_id) == ("done", "done")
    take = takes.get_take(studio, take_id)
    assert take.video_path.is_file() and take.finished_at is not None and take.error is None


def test_cancel_retry_and_the_transitions_that_are_refused(studio: Studio) -> None:
    [take_id] = queued_takes(studio, film(studio), 1)
    job_id = render_queue.job_of_take(studio, take_id).id

    render_queue.cancel_job(studio, job_id)
    assert states(studio, take_id) == ("cancelled", "cancelled")
    assert takes.get_take(studio, take_id).error == "cancelled before it started"
    with pytest.raises(Conflict, match="already cancelled"):
        render_queue.cancel_job(studio, job_id)

    render_queue.retry_job(studio, job_id)
    assert states(studio, take_id) == ("queued", "queued")
    assert takes.get_take(studio, take_id).error is None
    with pytest.raises(Conflict, match="only a failed or cancelled job can be retried"):
        render_queue.retry_job(studio, job_id)

    with studio.write() as session:
        job = lifecycle.claim(session, worker="here", device="cpu")
        lifecycle.cancel(session, job)  # running: asked to stop, still running until the worker sees it
        assert (job.state, job.cancel_requested) == ("running", True)
        assert lifecycle.report_progress(session, job.id, "denoising", 1, 8) is True
    with studio.write() as session:
        lifecycle.end(session, job_id, "failed", "the GPU ran out of memory")
        with pytest.raises(ValueError, match="failed or cancelled"):
            lifecycle.end(session, job_id, "done", "no")
    assert states(studio, take_id) == ("failed", "failed")
    assert takes.get_take(studio, take_id).error == "the GPU ran out of memory"


def test_a_finished_take_cannot_be_finished_again_or_cancelled(studio: Studio) -> None:
    [take_id] = queued_takes(studio, film(studio), 1)
    with RenderWorker(studio, device="cpu", score=False) as worker:
        worker.run(once=True)
    with studio.write() as session:
        job = session.scalar(select(Job).where(Job.take_id == take_id))
        with pytest.raises(Conflict, match="only a running job can finish"):
            lifecycle.finish(session, job, video=None, thumbnail=None, num_frames=1)  # type: ignore[arg-type]
        with pytest.raises(Conflict, match="already done"):
            lifecycle.cancel(session, job)
        with pytest.raises(Conflict, match="only a new take is queued"):
            lifecycle.enqueue(session, session.get(Take, take_id))
    assert states(studio, take_id) == ("done", "done")


def test_recovery_queues_an_interrupted_job_once_then_fails_it(studio: Studio) -> None:
    [take_id] = queued_takes(studio, film(studio), 1)
    for _ in range(lifecycle.MAX_ATTEMPTS):
        with studio.write() as session:
            lifecycle.claim(session, worker="gone", device="cuda:1")
        with studio.write() as session:
            assert lifecycle.recover(session, {"cuda:0"}) == []  # another device's jobs are not this worker's
            assert len(lifecycle.recover(session, {"cuda:1"})) == 1
    assert states(studio, take_id) == ("failed", "failed")
    assert "stopped 2 times" in takes.get_take(studio, take_id).error


# Only the lifecycle module changes a job's state or a take's status.

STATE_FIELDS = {"state", "status"}


def state_writes(path: Path) -> list[int]:
    """Lines of ``path`` that assign to an attribute called ``state`` or ``status`` (also inside a tuple)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            parts = target.elts if isinstance(target, ast.Tuple) else [target]
            if any(isinstance(part, ast.Attribute) and part.attr in STATE_FIELDS for part in parts):
                lines.append(node.lineno)
    return lines


def test_only_the_lifecycle_module_changes_states() -> None:
    writes = {
        str(path.relative_to(ROOT)): state_writes(path)
        for folder in ("projects", "app", "continuity", "storage")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "lifecycle.py" and "migrations" not in path.parts
    }
    assert {path: lines for path, lines in writes.items() if lines} == {}


def test_the_state_check_sees_tuple_assignments(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("job.state, job.error = 'done', None\ntake.status = 'done'\nstate = 1\n")
    assert state_writes(sample) == [1, 2]
