"""Keyframes from the cast: candidates of each shot's first (and last) frame, and character sheets.

Keyframe-first is how people keep many clips consistent: lock the characters' references, draw every shot's
first frame (and often its last) from them with a multi-image edit model, compare the candidates side by side,
and only then animate each approved frame. Here a candidate is a take of a picture
(:class:`storage.models.PictureTake`): queued with every setting it will be drawn with, rendered by the same
queue and workers as video takes (:mod:`projects.lifecycle`), stored with its provenance (backend, weights, load
spec, seed, prompt, input pictures by hash), scored for identity against the cast as it lands
(:mod:`projects.picture_inputs`), and approved. The approved first-frame candidate is the shot's keyframe
(:mod:`projects.shot_pictures`), so approving another marks the shot's video takes stale; an approved last frame
is what a backend that ends on a given frame (``wan-i2v``) ends on. A shot marked to end on the next shot's first
frame takes it from there, bridging the cut.

A character's sheet is the same machinery with the character as owner: views (front, three-quarter, profile,
full figure) drawn from its photos and scored against them; a kept view becomes one of its references.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pipelines.backend import BackendError, RequestError
from pipelines.keyframes import VIEWS, PictureRequest, Subject
from pipelines.registry import DEFAULT_PICTURE_BACKEND, describe, picture_backend_class
from projects import lifecycle, queries, shot_pictures
from projects.backends import models_dir
from projects.errors import Conflict, InvalidInput, NotFound
from projects.render_queue import QUEUE_BATCH, JobInfo, chosen_shots, job_info
from projects.studio import Studio
from projects.takes import refresh_stale
from projects.validation import MAX_REFERENCES, MAX_SEED, clean_priority, clean_seed
from storage.models import Character, PictureTake, Project, ReferenceImage, Shot

MAX_CANDIDATES = 16  # per shot and frame in one request
ROLES = ("first", "last")


@dataclass(frozen=True)
class PictureInfo:
    """A keyframe candidate (``shot_number`` and ``role`` first/last) or a character's view (``character`` and
    ``role`` the view). ``scores``: identity (with each character's verdict), look, continuity, as drawn."""

    id: int
    shot_id: int | None
    shot_number: int | None
    character: str | None
    role: str
    number: int
    status: str
    approved: bool
    backend: str
    seed: int
    prompt: str
    width: int
    height: int
    path: Path | None
    sha256: str | None
    scores: dict[str, Any]
    params: dict[str, Any]
    provenance: dict[str, Any]
    timings: dict[str, Any]
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def label(self) -> str:
        if self.shot_number is not None:
            return f"shot {self.shot_number} {self.role} frame, candidate {self.number}"
        return f"{self.character} {self.role} view {self.number}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "keyframe" if self.shot_id is not None else "view",
            "shot_number": self.shot_number,
            "character": self.character,
            "role": self.role,
            "number": self.number,
            "status": self.status,
            "approved": self.approved,
            "backend": self.backend,
            "seed": self.seed,
            "prompt": self.prompt,
            "width": self.width,
            "height": self.height,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "scores": self.scores,
            "provenance": self.provenance,
            "timings": self.timings,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class DrawSettings:
    """How candidates are drawn, beyond the shot itself. Stored with each candidate, so a retry draws the same."""

    backend: str = DEFAULT_PICTURE_BACKEND
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str = ""

    def to_params(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "steps": self.steps,
            "guidance": self.guidance,
            "negative_prompt": self.negative_prompt,
        }


def queue_keyframes(
    studio: Studio,
    project: str | int,
    *,
    shots: Sequence[int] | None = None,
    candidates: int = 4,
    settings: DrawSettings | None = None,
    frames: Sequence[str] = ("first",),
    seed: int | None = None,
    priority: int = 0,
) -> list[JobInfo]:
    """Queue ``candidates`` drawings of each chosen shot's ``frames`` (``first``, ``last`` or both; a shot that ends
    on the next shot's first frame draws no last frame). Every shot is checked before anything is queued: a shot
    with nothing to draw from is refused, naming it."""
    settings = settings or DrawSettings()
    frames = tuple(dict.fromkeys(frames))
    if not frames or any(frame not in ROLES for frame in frames):
        raise InvalidInput(f"must be first, last or both, got {', '.join(map(repr, frames)) or 'none'}", "frames")
    _check_count(candidates, "candidates")
    clean_priority(priority)
    if seed is not None:
        clean_seed(seed)
        if seed + candidates - 1 > MAX_SEED:
            raise InvalidInput(f"{candidates} candidates from seed {seed} would pass the largest seed, {MAX_SEED}")
    describe_picture_backend(studio, settings.backend)
    with studio.read() as session:
        row = queries.find_project(session, project)
        chosen = chosen_shots(session, row, shots, doing="draw keyframes for")
        for shot in chosen:
            check_shot(session, row, shot, settings)
        plan = [
            (shot.id, role) for shot in chosen for role in frames if role == "first" or not shot.last_frame_from_next
        ]
        if not plan:
            raise InvalidInput(
                "these shots end on the next shot's first frame: they have no last frame to draw", "frames"
            )
        project_id = row.id
    made: list[JobInfo] = []
    per_batch = max(1, QUEUE_BATCH // candidates)
    for start in range(0, len(plan), per_batch):
        with studio.write() as session:
            row = queries.get_project(session, project_id)
            jobs = []
            for shot_id, role in plan[start : start + per_batch]:
                shot = session.get(Shot, shot_id)
                if shot is None:
                    raise Conflict(
                        f"the storyboard changed while keyframes were being queued: {len(made)} candidate(s) were "
                        "queued, the rest were not"
                    )
                for index in range(candidates):
                    picture_seed = seed + index if seed is not None else secrets.randbelow(MAX_SEED + 1)
                    picture = _new_picture(session, row, settings, picture_seed, shot=shot, role=role)
                    jobs.append(lifecycle.enqueue(session, picture, priority=priority))
            made.extend(job_info(session, job) for job in jobs)
    return made


def queue_sheet(
    studio: Studio,
    project: str | int,
    character: str,
    *,
    views: Sequence[str] = VIEWS,
    candidates: int = 1,
    settings: DrawSettings | None = None,
    seed: int | None = None,
    priority: int = 0,
) -> list[JobInfo]:
    """Queue a character sheet: ``candidates`` drawings of each view of ``character`` from its references."""
    settings = settings or DrawSettings()
    _check_count(candidates, "candidates")
    clean_priority(priority)
    if seed is not None:
        clean_seed(seed)
    views = list(dict.fromkeys(views))
    if not views:
        raise InvalidInput("name at least one view", "views")
    unknown = [view for view in views if view not in VIEWS]
    if unknown:
        raise InvalidInput(f"the views are {', '.join(VIEWS)}; got {', '.join(map(repr, unknown))}", "views")
    cls = describe_picture_backend(studio, settings.backend)
    cannot = [view for view in views if view not in cls.capabilities.views]
    if cannot:
        raise InvalidInput(
            f"{cls.label} cannot draw the {', '.join(cannot)} view(s) (it draws {', '.join(cls.capabilities.views)}); "
            "use qwen-image-edit or flux2-klein",
            "views",
        )
    with studio.write() as session:
        row = queries.find_project(session, project)
        person = queries.find_character(session, row, character)
        if not person.references:
            raise InvalidInput(f"{person.name} has no reference pictures to draw a sheet from; add one", "character")
        jobs = []
        for view in views:
            for index in range(candidates):
                picture_seed = (seed + index) % (MAX_SEED + 1) if seed is not None else secrets.randbelow(MAX_SEED + 1)
                picture = _new_picture(session, row, settings, picture_seed, character=person, role=view)
                jobs.append(lifecycle.enqueue(session, picture, priority=priority))
        return [job_info(session, job) for job in jobs]


def describe_picture_backend(studio: Studio, name: str) -> Any:
    """The keyframe backend's class, refused (saying why) when it is unknown or cannot run here."""
    try:
        cls = picture_backend_class(name)
        info = describe(name, models_dir(studio))
    except BackendError as exc:
        raise InvalidInput(str(exc), "backend") from None
    if not info.available:
        raise Conflict(f"the {name} keyframe backend cannot run here: {info.reason}")
    return cls


def check_shot(session: Session, project: Project, shot: Shot, settings: DrawSettings) -> None:
    """What can be known before drawing: something to draw from, and a size and prompt the backend takes."""
    where = f"shot {shot.position}"
    cls = picture_backend_class(settings.backend)
    subjects = tuple(Subject(c.name, c.description, ()) for c in shot.characters if c.references)
    previous = shot_pictures.neighbour(session, shot, -1)
    has_scene = shot_pictures.location(session, shot) is not None or (
        previous is not None and shot_pictures.first_frame(session, previous) is not None
    )
    if not subjects and not has_scene:
        raise InvalidInput(
            "it has no characters with reference pictures and no location picture: nothing to draw a keyframe "
            "from; add its characters (with photos) or upload a picture of the place",
            where,
        )
    # The size, the prompt and the steps, against a stand-in of the place: the pictures are checked when drawn.
    stand_in = Image.new("RGB", (project.width, project.height), (128, 128, 128))
    request = PictureRequest(
        prompt=shot.prompt, width=project.width, height=project.height, scene=stand_in, steps=settings.steps
    )
    try:
        cls.check_request(request)
    except RequestError as exc:
        raise InvalidInput(str(exc), where) from None


def approve_keyframe(studio: Studio, picture_id: int) -> PictureInfo:
    """Approve a candidate: a shot's first-frame candidate becomes its keyframe (its video takes drawn from another
    are marked stale), a last-frame candidate its last frame; a character's view is kept as a reference."""
    with studio.write() as session:
        picture = _get(session, picture_id)
        if picture.status != "done" or picture.image is None:
            raise Conflict(f"keyframe candidate {picture_id} is {picture.status}; only a drawn one can be approved")
        if picture.character is not None:
            _keep_view(session, picture)
        elif not picture.approved:
            session.execute(
                update(PictureTake)
                .where(PictureTake.shot_id == picture.shot_id, PictureTake.role == picture.role, PictureTake.approved)
                .values(approved=False)
            )
            picture.approved = True
            session.flush()
            assert picture.shot is not None
            refresh_stale(session, picture.shot)
        return picture_info(studio, session, picture)


def unapprove_keyframe(studio: Studio, picture_id: int) -> PictureInfo:
    """Withdraw a shot's approved candidate: the shot starts (or ends) from its own pictures again."""
    with studio.write() as session:
        picture = _get(session, picture_id)
        if picture.shot is None:
            raise Conflict("a kept view is one of the character's references now; remove the reference instead")
        picture.approved = False
        session.flush()
        refresh_stale(session, picture.shot)
        return picture_info(studio, session, picture)


def list_keyframes(
    studio: Studio, project: str | int, *, shot_number: int | None = None, role: str | None = None
) -> list[PictureInfo]:
    """A project's keyframe candidates (or one shot's), in storyboard order, then role and number."""
    if role is not None and role not in ROLES:
        raise InvalidInput(f"must be one of {', '.join(ROLES)}, got {role!r}", "role")
    with studio.read() as session:
        row = queries.find_project(session, project)
        query = select(PictureTake).join(Shot, Shot.id == PictureTake.shot_id).where(Shot.project_id == row.id)
        if shot_number is not None:
            query = query.where(PictureTake.shot_id == queries.shot_at(session, row, shot_number).id)
        if role is not None:
            query = query.where(PictureTake.role == role)
        query = query.order_by(Shot.position, PictureTake.role, PictureTake.number)
        return [picture_info(studio, session, picture) for picture in session.scalars(query)]


def list_views(studio: Studio, project: str | int, character: str) -> list[PictureInfo]:
    """A character's drawn views, in the sheet's order."""
    with studio.read() as session:
        person = queries.find_character(session, queries.find_project(session, project), character)
        rows = session.scalars(select(PictureTake).where(PictureTake.character_id == person.id)).all()
        ordered = sorted(rows, key=lambda p: (VIEWS.index(p.role), p.number))
        return [picture_info(studio, session, picture) for picture in ordered]


def get_keyframe(studio: Studio, picture_id: int) -> PictureInfo:
    with studio.read() as session:
        return picture_info(studio, session, _get(session, picture_id))


def picture_info(studio: Studio, session: Session, picture: PictureTake) -> PictureInfo:
    image = picture.image
    return PictureInfo(
        id=picture.id,
        shot_id=picture.shot_id,
        shot_number=picture.shot.position if picture.shot is not None else None,
        character=picture.character.name if picture.character is not None else None,
        role=picture.role,
        number=picture.number,
        status=picture.status,
        approved=picture.approved,
        backend=picture.backend,
        seed=picture.seed,
        prompt=picture.prompt,
        width=picture.width,
        height=picture.height,
        path=studio.media.path_for(image.sha256, image.extension) if image is not None else None,
        sha256=image.sha256 if image is not None else None,
        scores=dict(picture.scores),
        params=dict(picture.params),
        provenance=dict(picture.provenance),
        timings=dict(picture.timings),
        error=picture.error,
        created_at=picture.created_at,
        finished_at=picture.finished_at,
    )


def _keep_view(session: Session, picture: PictureTake) -> None:
    character = picture.character
    assert character is not None and picture.image is not None
    if picture.approved:
        return
    count = len(character.references)
    if count >= MAX_REFERENCES:
        raise Conflict(f"{character.name} already has {count} reference images; the limit is {MAX_REFERENCES}")
    if any(ref.sha256 == picture.image.sha256 for ref in character.references):
        raise Conflict(f"{character.name} already has this view as a reference")
    last = max((ref.position for ref in character.references), default=0)
    session.add(
        ReferenceImage(
            character_id=character.id,
            sha256=picture.image.sha256,
            position=last + 1,
            original_name=f"{picture.role} view {picture.number} ({picture.backend}, seed {picture.seed})",
            width=picture.width,
            height=picture.height,
        )
    )
    picture.approved = True
    session.flush()


def _new_picture(
    session: Session,
    project: Project,
    settings: DrawSettings,
    seed: int,
    *,
    role: str,
    shot: Shot | None = None,
    character: Character | None = None,
) -> PictureTake:
    owner = PictureTake.shot_id == shot.id if shot is not None else PictureTake.character_id == character.id
    last = session.scalar(select(func.max(PictureTake.number)).where(owner, PictureTake.role == role))
    if shot is not None:
        prompt = shot.prompt if role == "first" else f"{shot.prompt.rstrip().rstrip('.')}. The end of the shot."
        width, height = project.width, project.height
    else:
        assert character is not None
        prompt = f"{character.name}, {character.description}" if character.description else character.name
        width = height = _sheet_side(project)
    picture = PictureTake(
        shot_id=shot.id if shot is not None else None,
        character_id=character.id if character is not None else None,
        role=role,
        number=(last or 0) + 1,
        status="queued",
        backend=settings.backend,
        seed=seed,
        prompt=prompt,
        width=width,
        height=height,
        params={"settings": settings.to_params()},
    )
    session.add(picture)
    session.flush()
    return picture


def _sheet_side(project: Project) -> int:
    """A sheet's views are square, as tall as the project's frames (a multiple of 16)."""
    return max(256, project.height // 16 * 16)


def _get(session: Session, picture_id: int) -> PictureTake:
    picture = session.get(PictureTake, picture_id) if isinstance(picture_id, int) else None
    if picture is None:
        raise NotFound(f"there is no keyframe candidate with id {picture_id}")
    return picture


def _check_count(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CANDIDATES:
        raise InvalidInput(f"must be between 1 and {MAX_CANDIDATES}, got {value!r}", field)
