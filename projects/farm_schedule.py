"""Which queued jobs a farm can start now: the story's order, not the list's.

Every picture job is ready. A take is ready unless its shot continues from the previous one and the take it would
start from does not exist yet (neither an approved take of the previous shot nor a finished one) while the
previous shot still has a take queued or rendering: then it waits for that take. A continued shot whose previous
shot has nothing coming is ready, and starts from its own keyframe or fails saying why, as on a local worker.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from projects.takes import source_take_for
from storage.models import Job, Shot, Take

READY_LOOKAHEAD = 500  # queued jobs looked at for one that is ready


def ready_jobs(session: Any, limit: int = READY_LOOKAHEAD) -> list[Job]:
    """Queued jobs in queue order (priority, then position) whose take can start now: every picture job, and every
    take whose shot starts from nothing that is still to come (see the module's docstring)."""
    queued = session.scalars(
        select(Job).where(Job.state == "queued").order_by(Job.priority.desc(), Job.position).limit(limit)
    ).all()
    ready, waiting = [], {}
    for job in queued:
        if job.take_id is None:
            ready.append(job)
            continue
        shot = job.take.shot
        if shot.id not in waiting:
            waiting[shot.id] = _waits_for_previous(session, shot)
        if not waiting[shot.id]:
            ready.append(job)
    return ready


def _waits_for_previous(session: Any, shot: Shot) -> bool:
    if not shot.continue_from_previous or shot.position == 1 or source_take_for(session, shot) is not None:
        return False
    previous = session.scalar(
        select(Shot.id).where(Shot.project_id == shot.project_id, Shot.position == shot.position - 1)
    )
    pending = session.scalar(
        select(Job.id)
        .join(Take, Take.id == Job.take_id)
        .where(Take.shot_id == previous, Job.state.in_(("queued", "running")))
        .limit(1)
    )
    return pending is not None
