"""The life of a take and of the job that renders it. Every change of ``Job.state``, ``Take.status`` and
``PictureTake.status`` is made here.

::

    queued --claim--> running --finish--> done
       |                 |--end--> failed / cancelled --retry--> queued
       |                 '--recover (worker died)--> queued (once), then failed
       '--cancel--> cancelled

A job renders a take of a video or a take of a picture (a keyframe candidate, a character's view): its
:attr:`~storage.models.Job.work`. Both live the same life. A take and its job always move together:
 the job says where the rendering stands (its worker, device, attempts,
progress), the take says what the user sees. Each function changes rows in the caller's write transaction
(``with studio.write() as session``), so a transition commits with whatever else the caller writes beside it
(the finished take's files and provenance, a new take's row) or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from projects.errors import Conflict
from projects.takes import refresh_stale
from storage.media import StoredFile
from storage.models import Job, PictureInput, PictureTake, Take, TakeInput, utcnow

MAX_ATTEMPTS = 2  # a job interrupted twice is failed, not retried forever
ENDINGS = ("failed", "cancelled")


def enqueue(session: Session, take: Take | PictureTake, *, priority: int = 0) -> Job:
    """The job of a new ``queued`` take (of a video or of a picture), at the end of the queue."""
    if take.status != "queued":
        raise Conflict(f"take {take.id} is {take.status}; only a new take is queued")
    owner = {"picture_take_id": take.id} if isinstance(take, PictureTake) else {"take_id": take.id}
    job = Job(**owner, priority=priority, position=_next_position(session))
    session.add(job)
    session.flush()
    return job


def claim(session: Session, *, worker: str, device: str, job_id: int | None = None) -> Job | None:
    """The next job by priority, then position (or job ``job_id``, if it is still queued), now ``running`` on
    ``device``; None when nothing is queued."""
    query = select(Job).where(Job.state == "queued")
    if job_id is not None:
        query = query.where(Job.id == job_id)
    job = session.scalars(query.order_by(Job.priority.desc(), Job.position).limit(1)).first()
    if job is None:
        return None
    now = utcnow()
    job.state, job.attempts, job.started_at, job.heartbeat_at = "running", job.attempts + 1, now, now
    job.worker, job.device, job.error, job.finished_at = worker, device, None, None
    _progress(job, "starting", 0, 0)
    job.work.status, job.work.started_at, job.work.error = "running", now, None
    return job


def report_progress(session: Session, job_id: int, stage: str, step: int, total: int) -> bool:
    """Record how far a running job is; True when the user asked it to stop."""
    job = session.get(Job, job_id)
    if job is None:
        return True
    _progress(job, stage, step, total)
    job.heartbeat_at = utcnow()
    return job.cancel_requested


def finish(session: Session, job: Job, *, video: StoredFile, thumbnail: StoredFile, num_frames: int) -> Take:
    """A rendered job is done: its take names its stored video and thumbnail, and later shots' marks are renewed.

    The caller stores the files (``studio.store_file``) and writes the take's provenance in the same transaction.
    A cancel requested while the video was being written wins: nothing is marked done.
    """
    if job.state != "running":
        raise Conflict(f"job {job.id} is {job.state}; only a running job can finish")
    if job.cancel_requested:
        raise Conflict(f"job {job.id} was cancelled while its video was being written")
    take = job.take
    take.video_sha256, take.thumbnail_sha256, take.num_frames = video.sha256, thumbnail.sha256, num_frames
    take.status, take.finished_at, take.error = "done", utcnow(), None
    job.state, job.finished_at = "done", utcnow()
    _progress(job, "done", 1, 1)
    refresh_stale(session, take.shot)
    return take


def finish_picture(session: Session, job: Job, *, image: StoredFile, scores: dict[str, Any]) -> PictureTake:
    """A drawn picture is done: its take names the stored image and keeps the scores it was given when drawn.
    As :func:`finish`, in the caller's transaction, and a cancel requested meanwhile wins."""
    if job.state != "running":
        raise Conflict(f"job {job.id} is {job.state}; only a running job can finish")
    if job.cancel_requested:
        raise Conflict(f"job {job.id} was cancelled while its picture was being written")
    picture = job.picture_take
    if picture is None:
        raise Conflict(f"job {job.id} renders a video take, not a picture")
    picture.image_sha256, picture.scores = image.sha256, scores
    picture.status, picture.finished_at, picture.error = "done", utcnow(), None
    job.state, job.finished_at = "done", utcnow()
    _progress(job, "done", 1, 1)
    return picture


def end(session: Session, job_id: int, state: str, reason: str) -> Job | None:
    """A running job failed, or stopped on request: job and take keep the reason in words."""
    if state not in ENDINGS:
        raise ValueError(f"a job ends failed or cancelled, not {state!r}")
    job = session.get(Job, job_id)
    if job is None:
        return None
    _end(job, state, reason)
    return job


def cancel(session: Session, job: Job) -> None:
    """Cancel a queued job now; ask a running one to stop at its next step."""
    if job.state == "queued":
        _end(job, "cancelled", "cancelled before it started")
        job.error = None
    elif job.state == "running":
        job.cancel_requested = True
    else:
        raise Conflict(f"job {job.id} is already {job.state}")


def retry(session: Session, job: Job) -> None:
    """Queue a failed or cancelled job again, at the end of the queue, with the same take, seed and settings.

    The pictures it starts from are resolved again when it runs (a continued shot takes its previous shot's
    current take), so the ones recorded for the failed attempt are dropped.
    """
    if job.state not in ENDINGS:
        raise Conflict(f"job {job.id} is {job.state}; only a failed or cancelled job can be retried")
    job.state, job.attempts, job.error, job.cancel_requested = "queued", 0, None, False
    job.started_at = job.finished_at = None
    _progress(job, "", 0, 0)
    job.position = _next_position(session)
    take = job.work
    take.status, take.error, take.started_at, take.finished_at = "queued", None, None, None
    _forget_inputs(session, take)


def recover(session: Session, devices: Iterable[str]) -> list[int]:
    """Jobs a dead worker left ``running`` on these devices: each is queued again once, then failed, with why.

    Only the worker that holds a device's lock calls this, so nothing else is rendering them.
    """
    recovered = []
    stuck = session.scalars(select(Job).where(Job.state == "running", Job.device.in_(list(devices)))).all()
    for job in stuck:
        _forget_inputs(session, job.work)
        if job.cancel_requested:
            _end(job, "cancelled", "cancelled (the worker stopped before it could finish cancelling)")
        elif job.attempts < MAX_ATTEMPTS:
            job.state, job.cancel_requested = "queued", False
            _progress(job, "", 0, 0)
            job.error = "the worker stopped while rendering this take; it was queued again"
            job.work.status, job.work.started_at = "queued", None
        else:
            _end(
                job,
                "failed",
                f"the worker stopped {job.attempts} times while rendering this take (killed, or out of memory); "
                "retry it to try again",
            )
        recovered.append(job.id)
    return recovered


def _end(job: Job, state: str, reason: str) -> None:
    now = utcnow()
    job.state, job.error, job.finished_at = state, reason, now
    job.work.status, job.work.error, job.work.finished_at = state, reason, now


def _progress(job: Job, stage: str, step: int, total: int) -> None:
    job.progress_stage, job.progress_step, job.progress_total = stage, step, total


def _next_position(session: Session) -> int:
    return (session.scalar(select(func.max(Job.position))) or 0) + 1


def _forget_inputs(session: Session, take: Take | PictureTake) -> None:
    if isinstance(take, PictureTake):
        session.execute(PictureInput.__table__.delete().where(PictureInput.picture_take_id == take.id))
    else:
        session.execute(TakeInput.__table__.delete().where(TakeInput.take_id == take.id))
