"""The render queue as a filmmaker watches it overnight: each job with a picture, its progress and time left, and
the totals: what is done, failed and waiting, the hours spent and an estimate of the hours to go.

A job's picture is its result once it has one (the take's thumbnail, the drawn picture), else the picture its
shot starts from. The estimate of the time to go is the running jobs' time left plus the queued jobs at the mean
time of the takes finished so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from projects import queries, render_queue
from projects.board import seconds_left
from projects.job_records import JobInfo
from projects.studio import Studio
from storage.models import MediaObject, PictureTake, Shot, Take, utcnow


@dataclass(frozen=True)
class JobCard:
    job: JobInfo
    picture: Path | None
    seconds_left: int | None

    def to_json(self) -> dict[str, Any]:
        return self.job.to_json() | {
            "picture": str(self.picture) if self.picture else None,
            "seconds_left": self.seconds_left,
        }


@dataclass(frozen=True)
class QueueCards:
    jobs: tuple[JobCard, ...] = ()
    totals: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"jobs": [card.to_json() for card in self.jobs], "totals": self.totals}


def queue_cards(studio: Studio, project: str | int) -> QueueCards:
    """The project's jobs in the order they run, each with its picture and time left, and the totals."""
    jobs = render_queue.list_jobs(studio, project)
    now = utcnow()
    with studio.read() as session:
        take_ids = [job.take_id for job in jobs if job.take_id]
        thumbs = {
            take_id: studio.media.path_for(sha256, extension)
            for take_id, sha256, extension in session.execute(
                select(Take.id, MediaObject.sha256, MediaObject.extension)
                .join(MediaObject, MediaObject.sha256 == Take.thumbnail_sha256)
                .where(Take.id.in_(take_ids))
            ).all()
        }
        drawn = {
            picture_id: studio.media.path_for(sha256, extension)
            for picture_id, sha256, extension in session.execute(
                select(PictureTake.id, MediaObject.sha256, MediaObject.extension)
                .join(MediaObject, MediaObject.sha256 == PictureTake.image_sha256)
                .where(PictureTake.id.in_([job.picture_take_id for job in jobs if job.picture_take_id]))
            ).all()
        }
        shot_ids = {job.shot_id for job in jobs if job.shot_id}
        shots = session.scalars(select(Shot).where(Shot.id.in_(shot_ids)).options(*queries.SHOT_LOADING)).all()
        pictures = {info.id: info.picture for info in queries.shot_infos(session, studio.media, list(shots))}
    cards = []
    for job in jobs:
        result = thumbs.get(job.take_id) if job.take_id else drawn.get(job.picture_take_id)
        picture = result or (pictures.get(job.shot_id) if job.shot_id else None)
        left = seconds_left(job.started_at, job.step, job.total, now) if job.state == "running" else None
        cards.append(JobCard(job, picture, left))
    return QueueCards(tuple(cards), _totals(cards))


def _totals(cards: list[JobCard]) -> dict[str, Any]:
    counts = {state: 0 for state in ("running", "queued", "done", "failed", "cancelled")}
    spent = []
    for card in cards:
        counts[card.job.state] = counts.get(card.job.state, 0) + 1
        if card.job.state == "done" and card.job.started_at and card.job.finished_at:
            spent.append((card.job.finished_at - card.job.started_at).total_seconds())
    mean = sum(spent) / len(spent) if spent else None
    running_left = [card.seconds_left for card in cards if card.job.state == "running"]
    to_go = None
    if mean is not None and None not in running_left:
        to_go = round(sum(running_left) + mean * counts["queued"])  # type: ignore[arg-type]
    return counts | {
        "seconds_spent": round(sum(spent)),
        "seconds_per_take": round(mean, 1) if mean is not None else None,
        "seconds_to_go": to_go,
    }
