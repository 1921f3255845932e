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
    if job.take is None:
        return _picture_job_info(job)
    take = job.take
    shot = take.shot
    return JobInfo(
        id=job.id,
        take_id=take.id,
        project_id=shot.project_id,
        shot_id=shot.id,
        shot_number=shot.position,
        take_number=take.take_number,
        state=job.state,
        priority=job.priority,
        position=job.position,
        attempts=job.attempts,
        backend=take.backend,
        seed=take.seed,
        stage=job.progress_stage,
        step=job.progress_step,
        total=job.progress_total,
        cancel_requested=job.cancel_requested,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        what=f"shot {shot.position} take {take.take_number}",
    )


def _picture_job_info(job: Job) -> JobInfo:
    picture = job.picture_take
    assert picture is not None
    if picture.shot is not None:
        owner_project, shot_id, shot_number = picture.shot.project_id, picture.shot.id, picture.shot.position
        what = f"shot {shot_number} {picture.role} frame {picture.number}"
    else:
        assert picture.character is not None
        owner_project, shot_id, shot_number = picture.character.project_id, None, 0
        what = f"{picture.character.name} {picture.role} {picture.number}"
    return JobInfo(
        id=job.id,
        take_id=None,
        project_id=owner_project,
        shot_id=shot_id,
        shot_number=shot_number,
        take_number=picture.number,
        state=job.state,
        priority=job.priority,
        position=job.position,
        attempts=job.attempts,
        backend=picture.backend,
        seed=picture.seed,
        stage=job.progress_stage,
        step=job.progress_step,
        total=job.progress_total,
        cancel_requested=job.cancel_requested,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        kind="keyframe" if picture.shot_id is not None else "view",
        picture_take_id=picture.id,
        what=what,
    )
