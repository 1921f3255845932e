"""The render queue: turning shots into queued takes, and managing the jobs that render them.

Queueing checks everything that can be checked before a model loads (the backend exists and can run here,
every shot has something to start from, the camera path fits the backend) and then writes one take and one
job per requested rendering in a single transaction: a request with any problem queues nothing.

Jobs run in ``(priority DESC, position ASC)`` order, one worker per device (see :mod:`projects.worker`).
A queued job can be cancelled, reordered or re-prioritised; a running one is asked to stop through its
``cancel_requested`` flag, which the worker reads between denoising steps; a failed or cancelled job can be
retried, which queues its take again with the same seed and settings.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from pipelines.backend import BackendError, GenerationRequest, RefinerSettings, RequestError, frames_for
from pipelines.registry import backend_class, describe
from pipelines.windows import plan_render
from projects import lifecycle, queries, shot_pictures
from projects.backends import models_dir
from projects.errors import Conflict, InvalidInput, NotFound
from projects.job_records import WITH_WORK, JobInfo, job_info
from projects.records import TakeInfo
from projects.studio import Studio
from projects.validation import MAX_SEED, clean_priority, clean_seed
from storage.models import Character, Job, PictureTake, Project, Shot, Take

MAX_TAKES_PER_SHOT = 100
QUEUE_BATCH = 200  # takes written per transaction when queuing


@dataclass(frozen=True)
class RenderSettings:
    """How takes are rendered, beyond the shot itself. Stored with each take, so a retry renders the same."""

    backend: str = "animatic"
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    refiner: bool = False
    refiner_steps: int | None = None
    refiner_strength: float = 0.3
    caption: bool = True  # the animatic writes the shot's title on its frames

    def refiner_settings(self) -> RefinerSettings:
        return RefinerSettings(enabled=self.refiner, steps=self.refiner_steps, strength=self.refiner_strength)

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RenderSettings:
        known = {key: params[key] for key in cls.__dataclass_fields__ if key in params}
        return cls(**known)


def shot_frames(duration: float, fps: int) -> int:
    """Frames in a shot: its duration at the project's fps (:func:`pipelines.backend.frames_for`)."""
    return frames_for(duration, fps)


def queue_renders(
    studio: Studio,
    project: str | int,
    *,
    shots: Sequence[int] | None = None,
    takes: int = 1,
    settings: RenderSettings | None = None,
    seed: int | None = None,
    priority: int = 0,
) -> list[JobInfo]:
    """Queue ``takes`` renderings of each shot (by 1-based number; all shots when ``shots`` is None)."""
    settings = settings or RenderSettings()
    if isinstance(takes, bool) or not isinstance(takes, int) or not 1 <= takes <= MAX_TAKES_PER_SHOT:
        raise InvalidInput(f"must be between 1 and {MAX_TAKES_PER_SHOT} takes per shot, got {takes!r}", "takes")
    if seed is not None:
        clean_seed(seed)
    if seed is not None and seed + takes - 1 > MAX_SEED:
        raise InvalidInput(
            f"{takes} takes from seed {seed} would go past the largest seed, {MAX_SEED}; start lower", "seed"
        )
    clean_priority(priority)
    info = describe_backend(studio, settings.backend)
    # Every shot is checked first, in a read (a request with a problem queues nothing); the takes are then
    # written a batch at a time, so queuing a storyboard of thousands of shots never holds the database's write
    # lock for long: the worker and the page write between the batches.
    with studio.read() as session:
        row = queries.find_project(session, project)
        project_id, chosen = row.id, chosen_shots(session, row, shots)
        for shot in chosen:
            check_shot(session, row, shot, settings)
        shot_ids = [shot.id for shot in chosen]
    made: list[JobInfo] = []
    per_batch = max(1, QUEUE_BATCH // takes)
    for start in range(0, len(shot_ids), per_batch):
        batch = shot_ids[start : start + per_batch]
        with studio.write() as session:
            row = queries.get_project(session, project_id)
            found = {shot.id: shot for shot in session.scalars(select(Shot).where(Shot.id.in_(batch)))}
            if len(found) < len(batch):
                raise Conflict(
                    f"the storyboard changed while its takes were being queued: {len(made)} take(s) were queued, "
                    "the rest were not; look at the queue and queue the missing shots again"
                )
            jobs = []
            for shot_id in batch:
                for index in range(takes):
                    take_seed = seed + index if seed is not None else secrets.randbelow(MAX_SEED + 1)
                    take = new_take(session, row, found[shot_id], settings, take_seed, backend_source=info.source)
                    jobs.append(lifecycle.enqueue(session, take, priority=priority))
            made.extend(job_info(session, job) for job in jobs)
    return made


def check_renders(
    studio: Studio, project: str | int, *, shots: Sequence[int] | None = None, settings: RenderSettings | None = None
) -> None:
    """Refuse, as :func:`queue_renders` would, a request for these shots, without queuing anything: for callers
    that queue the shots later, a few at a time, and must not find a problem half-way."""
    settings = settings or RenderSettings()
    describe_backend(studio, settings.backend)
    with studio.read() as session:
        row = queries.find_project(session, project)
        for shot in chosen_shots(session, row, shots):
            check_shot(session, row, shot, settings)


def describe_backend(studio: Studio, name: str) -> Any:
    """The backend's description; an unknown backend or one that cannot run here is refused, saying why."""
    try:
        info = describe(name, models_dir(studio))
    except BackendError as exc:
        raise InvalidInput(str(exc), "backend") from None
    if not info.available:
        raise Conflict(f"the {name} backend cannot run here: {info.reason}")
    return info


def chosen_shots(
    session: Session, project: Project, numbers: Sequence[int] | None, *, doing: str = "render"
) -> list[Shot]:
    """The shots numbered ``numbers`` (1-based, each once, in the order given), or every shot when None."""
    if numbers is None:
        chosen = list(session.scalars(select(Shot).where(Shot.project_id == project.id).order_by(Shot.position)).all())
        if not chosen:
            raise InvalidInput(f"project {project.name!r} has no shots to {doing}", "shots")
        return chosen
    if not numbers:
        raise InvalidInput("name at least one shot", "shots")
    seen: set[int] = set()
    chosen = []
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidInput(f"shot numbers are whole numbers, got {number!r}", "shots")
        if number in seen:
            continue
        seen.add(number)
        chosen.append(queries.shot_at(session, project, number))
    return chosen


def check_shot(session: Session, project: Project, shot: Shot, settings: RenderSettings) -> None:
    """Everything about a shot that can be known before rendering: where its first frame comes from, and
    whether the backend can follow its camera and length."""
    cls = backend_class(settings.backend)
    caps = cls.capabilities
    where = f"shot {shot.position}"
    has_keyframe = shot_pictures.first_frame(session, shot) is not None
    continues = shot.continue_from_previous and shot.position > 1
    if shot.keyframe_character_id is not None and _character_keyframe(shot) is None:
        raise InvalidInput(
            f"its keyframe is {shot.keyframe_character.name}'s first reference image, but "
            f"{shot.keyframe_character.name} has none; add one",
            where,
        )
    if not has_keyframe and not continues and not caps.text_only:
        raise InvalidInput(
            f"it has no keyframe and nothing to continue from; {cls.label} starts from an image. Draw keyframes "
            "from its cast, upload a keyframe, pick a character's reference, or mark it to continue from the "
            "previous shot",
            where,
        )
    frames = shot_frames(shot.duration, project.fps)
    request = GenerationRequest(
        prompt=shot.prompt,
        width=project.width,
        height=project.height,
        fps=project.fps,
        num_frames=frames,
        camera=shot.camera,
        steps=settings.steps,
        guidance=settings.guidance,
        refiner=settings.refiner_settings(),
    )
    try:
        plan_render(cls, request)
    except RequestError as exc:
        raise InvalidInput(f"{exc} ({shot.duration:g} s at {project.fps} fps)", where) from None


def _character_keyframe(shot: Shot) -> str | None:
    character = shot.keyframe_character
    if character is None or not character.references:
        return None
    return character.references[0].sha256


def model_prompt(shot: Shot) -> str:
    """The shot's prompt with its characters' descriptions, which is what keeps them recognisable."""
    described = [f"{c.name}: {c.description}" for c in shot.characters if c.description.strip()]
    if not described:
        return shot.prompt
    return f"{shot.prompt.rstrip().rstrip('.')}. " + "; ".join(described) + "."


def new_take(
    session: Session,
    project: Project,
    shot: Shot,
    settings: RenderSettings,
    seed: int,
    *,
    backend_source: str | None = None,
    pinned: dict[str, Any] | None = None,
) -> Take:
    """A queued take of ``shot`` with the next free number and every setting it will be rendered with."""
    last = session.scalar(select(func.max(Take.take_number)).where(Take.shot_id == shot.id))
    params: dict[str, Any] = {
        "settings": settings.to_params(),
        "camera": shot.camera,
        "duration": shot.duration,
        "title": shot.title,
        "model_source": backend_source,
    }
    if pinned:
        params["pinned_inputs"] = pinned
    take = Take(
        shot_id=shot.id,
        take_number=(last or 0) + 1,
        status="queued",
        backend=settings.backend,
        seed=seed,
        prompt=model_prompt(shot),
        width=project.width,
        height=project.height,
        fps=project.fps,
        num_frames=shot_frames(shot.duration, project.fps),
        params=params,
    )
    session.add(take)
    session.flush()
    return take


def render_again(studio: Studio, take_id: int, *, priority: int = 0) -> JobInfo:
    """Queue a new take that repeats ``take_id`` exactly: same backend, settings, seed and input pictures."""
    with studio.write() as session:
        original = queries.get_take(session, take_id)
        if original.status != "done":
            raise Conflict(f"take {take_id} is {original.status}; only a finished take can be rendered again")
        settings = RenderSettings.from_params(original.params.get("settings", {}))
        describe_backend(studio, settings.backend)
        shot = original.shot
        pinned = {
            "inputs": [
                {"role": i.role, "position": i.position, "sha256": i.sha256, "character_id": i.character_id}
                for i in original.inputs
            ],
            "source_take_id": original.source_take_id,
            "from_take_id": original.id,
        }
        take = new_take(
            session,
            shot.project,
            shot,
            settings,
            original.seed,
            backend_source=original.params.get("model_source"),
            pinned=pinned,
        )
        # Repeat the original exactly, even if the shot was edited since.
        take.prompt, take.width, take.height = original.prompt, original.width, original.height
        take.fps, take.num_frames = original.fps, original.params.get("requested_frames", original.num_frames)
        take.params = {**take.params, "camera": original.params.get("camera", shot.camera)}
        take.params = {**take.params, "duration": original.params.get("duration", shot.duration)}
        take.params = {**take.params, "title": original.params.get("title", shot.title)}
        return job_info(session, lifecycle.enqueue(session, take, priority=priority))


def list_jobs(
    studio: Studio, project: str | int | None = None, *, states: Sequence[str] | None = None
) -> list[JobInfo]:
    """Jobs in the order they run (running first, then queued by priority and position, then the finished)."""
    with studio.read() as session:
        query = select(Job).options(*WITH_WORK)
        if project is not None:
            project_id = queries.find_project(session, project).id
            takes = select(Take.id).join(Shot).where(Shot.project_id == project_id)
            pictures = (
                select(PictureTake.id)
                .outerjoin(Shot, Shot.id == PictureTake.shot_id)
                .outerjoin(Character, Character.id == PictureTake.character_id)
                .where(or_(Shot.project_id == project_id, Character.project_id == project_id))
            )
            query = query.where(or_(Job.take_id.in_(takes), Job.picture_take_id.in_(pictures)))
        if states:
            query = query.where(Job.state.in_(list(states)))
        order = {"running": 0, "queued": 1}
        jobs = session.scalars(query).all()
        jobs = sorted(
            jobs, key=lambda j: (order.get(j.state, 2), -j.priority if j.state == "queued" else 0, j.position)
        )
        return [job_info(session, job) for job in jobs]


def get_job(studio: Studio, job_id: int) -> JobInfo:
    with studio.read() as session:
        return job_info(session, _job(session, job_id))


def get_jobs(studio: Studio, job_ids: Sequence[int]) -> dict[int, JobInfo]:
    """Several jobs by id, in one read (a job that does not exist is missing from the result)."""
    with studio.read() as session:
        found = session.scalars(select(Job).where(Job.id.in_(job_ids)).options(*WITH_WORK))
        return {job.id: job_info(session, job) for job in found}


def job_of_take(studio: Studio, take_id: int) -> JobInfo:
    """The render job of a take; a take rendered in another data directory (unpacked from a bundle) has none."""
    with studio.read() as session:
        job = session.scalar(select(Job).where(Job.take_id == take_id))
        if job is None:
            queries.get_take(session, take_id)  # NotFound for a take that does not exist
            raise NotFound(f"take {take_id} has no render job here (it was rendered in another data directory)")
        return job_info(session, job)


def cancel_job(studio: Studio, job_id: int) -> JobInfo:
    """Cancel a queued job now, or ask a running one to stop at its next step."""
    with studio.write() as session:
        job = _job(session, job_id)
        lifecycle.cancel(session, job)
        session.flush()
        return job_info(session, job)


def retry_job(studio: Studio, job_id: int) -> JobInfo:
    """Queue a failed or cancelled job again (same take, seed and settings), at the end of the queue."""
    with studio.write() as session:
        job = _job(session, job_id)
        lifecycle.retry(session, job)
        session.flush()
        return job_info(session, job)


def move_job(studio: Studio, job_id: int, *, before: int | None = None, priority: int | None = None) -> JobInfo:
    """Reorder the queue: put a queued job just before job ``before``, and/or change its priority."""
    with studio.write() as session:
        job = _job(session, job_id)
        if job.state != "queued":
            raise Conflict(f"job {job_id} is {job.state}; only queued jobs can be moved")
        if priority is not None:
            job.priority = clean_priority(priority)
        if before is not None:
            anchor = _job(session, before)
            if anchor.id == job.id:
                raise InvalidInput("a job cannot move before itself", "before")
            session.execute(
                update(Job).where(Job.position >= anchor.position, Job.id != job.id).values(position=Job.position + 1)
            )
            session.refresh(anchor)
            job.position = anchor.position - 1
            job.priority = anchor.priority if priority is None else job.priority
        session.flush()
        return job_info(session, job)


def nudge_job(studio: Studio, job_id: int, project: str | int, to: str) -> JobInfo:
    """Move a queued job of ``project`` among the project's waiting jobs: ``first`` (it runs next), ``up`` or
    ``down`` one place."""
    if to not in ("first", "up", "down"):
        raise InvalidInput(f"must be first, up or down, got {to!r}", "to")
    waiting = list_jobs(studio, project, states=["queued"])
    ids = [job.id for job in waiting]
    if job_id not in ids:
        with studio.read() as session:
            state = _job(session, job_id).state
        raise Conflict(f"job {job_id} is {state}, not waiting in this project's queue; only queued jobs move")
    at = ids.index(job_id)
    if to == "first" and at > 0:
        return move_job(studio, job_id, before=ids[0], priority=waiting[0].priority)
    if to == "up" and at > 0:
        return move_job(studio, job_id, before=ids[at - 1], priority=waiting[at - 1].priority)
    if to == "down" and at + 1 < len(ids):
        # The one after it moves before it: the same swap, and it works at the end of the queue too.
        move_job(studio, ids[at + 1], before=job_id, priority=waiting[at].priority)
    return get_job(studio, job_id)


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"there is no job with id {job_id}")
    return job


def takes_of_jobs(studio: Studio, job_ids: Sequence[int]) -> list[TakeInfo]:
    with studio.read() as session:
        jobs = [_job(session, job_id) for job_id in job_ids]
        return [queries.take_info(studio.media, job.take, job.take.shot.position) for job in jobs if job.take]
