"""A job of the render queue as the front ends see it: what it renders (a video take, a keyframe candidate, a
character's view), in words, and where it stands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, joinedload

from storage.models import Job, PictureTake, Take


@dataclass(frozen=True)
class JobInfo:
    """A job of the queue. ``kind`` says what it renders: a video ``take`` (``take_id``), or a picture
    (``picture_take_id``): a shot's ``keyframe`` candidate or a character's sheet ``view``; ``what`` says it in
    words ("shot 3 take 2", "shot 3 first frame 4", "Mara profile 1"). A view belongs to no shot (shot 0)."""

    id: int
    take_id: int | None
    project_id: int
    shot_id: int | None
    shot_number: int
    take_number: int
    state: str
    priority: int
    position: int
    attempts: int
    backend: str
    seed: int
    stage: str
    step: int
    total: int
    cancel_requested: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    kind: str = "take"
    picture_take_id: int | None = None
    what: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "what": self.what,
            "take_id": self.take_id,
            "keyframe_candidate_id": self.picture_take_id,
            "shot_id": self.shot_id,
            "shot_number": self.shot_number,
            "take_number": self.take_number,
            "state": self.state,
            "priority": self.priority,
            "position": self.position,
            "attempts": self.attempts,
            "backend": self.backend,
            "seed": self.seed,
            "progress": {"stage": self.stage, "step": self.step, "total": self.total},
            "cancel_requested": self.cancel_requested,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


# A job's record needs what it renders and its shot or character: loaded with the jobs, not one query per job.
WITH_WORK = (
    joinedload(Job.take).joinedload(Take.shot),
    joinedload(Job.picture_take).joinedload(PictureTake.shot),
    joinedload(Job.picture_take).joinedload(PictureTake.character),
)


def job_info(session: Session, job: Job) -> JobInfo:
    """The record of ``job``: where it stands, and what it renders in words."""
    del session
    work = job.work
    if isinstance(work, Take):
        shot = work.shot
        owner: dict[str, Any] = {
            "take_id": work.id,
            "project_id": shot.project_id,
            "shot_id": shot.id,
            "shot_number": shot.position,
            "take_number": work.take_number,
            "what": f"shot {shot.position} take {work.take_number}",
        }
    elif work.shot is not None:
        shot = work.shot
        owner = {
            "project_id": shot.project_id,
            "shot_id": shot.id,
            "shot_number": shot.position,
            "kind": "keyframe",
            "what": f"shot {shot.position} {work.role} frame {work.number}",
        }
    else:
        assert work.character is not None  # a character's view belongs to no shot: shot 0
        owner = {
            "project_id": work.character.project_id,
            "shot_id": None,
            "shot_number": 0,
            "kind": "view",
            "what": f"{work.character.name} {work.role} {work.number}",
        }
    if not isinstance(work, Take):
        owner |= {"take_id": None, "take_number": work.number, "picture_take_id": work.id}
    return JobInfo(
        id=job.id,
        state=job.state,
        priority=job.priority,
        position=job.position,
        attempts=job.attempts,
        backend=work.backend,
        seed=work.seed,
        stage=job.progress_stage,
        step=job.progress_step,
        total=job.progress_total,
        cancel_requested=job.cancel_requested,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        **owner,
    )
