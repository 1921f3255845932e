"""The board: every shot of a project as a card, with what a filmmaker needs to see at a glance.

A card holds the shot's picture, number, title, duration, camera and characters, and its state: approved,
stale (and what it continues from), rendering (with its progress and time left), queued, failed, and its best
identity score; and a strip of its newest takes. :func:`board` reads a whole project in a fixed number of queries
whatever its size, so a storyboard of a thousand shots opens at once; :func:`render_from_board` queues what the
board's buttons ask for: one shot, every shot missing an approved take or stale, or all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from projects import queries, render_queue
from projects.errors import InvalidInput
from projects.job_records import JobInfo
from projects.render_queue import RenderSettings
from projects.studio import Studio
from storage.models import Job, MediaObject, Shot, Take, TakeScore, utcnow

STRIP = 5  # takes shown under a card: the newest, with the approved one always among them
BOARD_SCOPES = ("shot", "needed", "all")


@dataclass(frozen=True)
class TakeCard:
    id: int
    number: int
    status: str
    approved: bool
    thumbnail: Path | None
    identity: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "status": self.status,
            "approved": self.approved,
            "thumbnail": str(self.thumbnail) if self.thumbnail else None,
            "identity": self.identity,
        }


@dataclass(frozen=True)
class ShotCard:
    id: int
    number: int
    title: str
    duration: float
    camera: str
    characters: tuple[str, ...]
    picture: Path | None
    approved_take: int | None  # its take number
    stale: bool
    stale_why: str
    rendering: dict[str, Any] | None  # {"stage", "step", "total", "seconds_left"} of its running job
    queued: int
    failed: bool  # its newest take failed
    best_identity: float | None
    take_count: int
    takes: tuple[TakeCard, ...] = ()
    approved_video: Path | None = None  # the approved take's video, for a play-through of the cut

    @property
    def needs_render(self) -> bool:
        """No approved take, or one that no longer matches what it continues from."""
        return self.approved_take is None or self.stale

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "title": self.title,
            "duration": self.duration,
            "camera": self.camera,
            "characters": list(self.characters),
            "picture": str(self.picture) if self.picture else None,
            "approved_take": self.approved_take,
            "stale": self.stale,
            "stale_why": self.stale_why,
            "rendering": self.rendering,
            "queued": self.queued,
            "failed": self.failed,
            "best_identity": self.best_identity,
            "take_count": self.take_count,
            "takes": [take.to_json() for take in self.takes],
            "approved_video": str(self.approved_video) if self.approved_video else None,
        }


@dataclass(frozen=True)
class Board:
    project_id: int
    project: str
    shots: tuple[ShotCard, ...] = ()
    totals: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "project": self.project,
            "shots": [shot.to_json() for shot in self.shots],
            "totals": self.totals,
        }


def board(studio: Studio, project: str | int) -> Board:
    """Every shot of ``project`` as a card (see the module docstring)."""
    with studio.read() as session:
        row = queries.find_project(session, project)
        in_order = select(Shot).where(Shot.project_id == row.id).order_by(Shot.position)
        shots = list(session.scalars(in_order.options(*queries.SHOT_LOADING)).all())
        infos = {info.id: info for info in queries.shot_infos(session, studio.media, shots)}
        takes: dict[int, list[tuple[Any, ...]]] = {}
        listed = (
            select(Take.id, Take.shot_id, Take.take_number, Take.status, Take.approved, MediaObject)
            .outerjoin(MediaObject, MediaObject.sha256 == Take.thumbnail_sha256)
            .join(Shot, Shot.id == Take.shot_id)
            .where(Shot.project_id == row.id)
            .order_by(Take.shot_id, Take.take_number)
        )
        for take_id, shot_id, number, status, approved, thumb in session.execute(listed).all():
            picture = studio.media.path_for(thumb.sha256, thumb.extension) if thumb is not None else None
            takes.setdefault(shot_id, []).append((take_id, number, status, approved, picture))
        identity = dict(
            session.execute(
                select(TakeScore.take_id, func.max(TakeScore.value))
                .join(Take, Take.id == TakeScore.take_id)
                .join(Shot, Shot.id == Take.shot_id)
                .where(Shot.project_id == row.id, TakeScore.metric == "identity")
                .group_by(TakeScore.take_id)
            ).all()
        )
        videos = {
            shot_id: studio.media.path_for(sha256, extension)
            for shot_id, sha256, extension in session.execute(
                select(Take.shot_id, MediaObject.sha256, MediaObject.extension)
                .join(MediaObject, MediaObject.sha256 == Take.video_sha256)
                .join(Shot, Shot.id == Take.shot_id)
                .where(Shot.project_id == row.id, Take.approved)
            ).all()
        }
        running: dict[int, dict[str, Any]] = {}
        queued: dict[int, int] = {}
        active = (
            select(Job, Take.shot_id)
            .join(Take, Take.id == Job.take_id)
            .join(Shot, Shot.id == Take.shot_id)
            .where(Shot.project_id == row.id, Job.state.in_(("queued", "running")))
        )
        now = utcnow()
        for job, shot_id in session.execute(active).all():
            if job.state == "running":
                running[shot_id] = _progress(job, now)
            else:
                queued[shot_id] = queued.get(shot_id, 0) + 1
        cards = tuple(
            _card(infos[shot.id], shot, takes.get(shot.id, []), identity, running, queued, videos.get(shot.id))
            for shot in shots
        )
        return Board(row.id, row.name, cards, _totals(cards, running))


def seconds_left(started_at: datetime | None, step: int, total: int, now: datetime) -> int | None:
    """How long a running job still needs at its pace so far (None before its first step)."""
    if started_at is None or not total or not step:
        return None
    spent = (now - started_at).total_seconds()
    return max(0, round(spent / step * (total - step)))


def _progress(job: Job, now: datetime) -> dict[str, Any]:
    """A running job's stage, steps and an estimate of the seconds left (from its pace so far)."""
    return {
        "stage": job.progress_stage,
        "step": job.progress_step,
        "total": job.progress_total,
        "seconds_left": seconds_left(job.started_at, job.progress_step, job.progress_total, now),
    }


def _card(
    info: Any,
    shot: Shot,
    takes: list[tuple[Any, ...]],
    identity: dict[int, float],
    running: dict[int, dict[str, Any]],
    queued: dict[int, int],
    approved_video: Path | None,
) -> ShotCard:
    approved = next((number for _id, number, _s, ok, _p in takes if ok), None)
    newest = takes[-STRIP:]
    if approved is not None and all(number != approved for _id, number, *_ in newest):
        newest = [t for t in takes if t[3]] + newest[1:]
    strip = tuple(
        TakeCard(take_id, number, status, ok, picture, identity.get(take_id))
        for take_id, number, status, ok, picture in newest
    )
    scores = [identity[take_id] for take_id, *_ in takes if take_id in identity]
    return ShotCard(
        id=shot.id,
        number=shot.position,
        title=shot.title or shot.prompt[:60],
        duration=shot.duration,
        camera=shot.camera,
        characters=info.characters,
        picture=info.picture,
        approved_take=approved,
        stale=shot.stale,
        stale_why=_stale_why(shot) if shot.stale else "",
        rendering=running.get(shot.id),
        queued=queued.get(shot.id, 0),
        failed=bool(takes) and takes[-1][2] == "failed",
        best_identity=max(scores) if scores else None,
        take_count=len(takes),
        takes=strip,
        approved_video=approved_video,
    )


def _stale_why(shot: Shot) -> str:
    if shot.continue_from_previous and shot.position > 1:
        return f"continues from shot {shot.position - 1}, whose approved take changed since"
    return "its keyframe or last frame changed since its approved take was made"


def _totals(cards: tuple[ShotCard, ...], running: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {
        "shots": len(cards),
        "approved": sum(card.approved_take is not None for card in cards),
        "stale": sum(card.stale for card in cards),
        "missing": sum(card.approved_take is None for card in cards),
        "rendering": len(running),
        "queued": sum(card.queued for card in cards),
        "failed": sum(card.failed for card in cards),
        "seconds": round(sum(card.duration for card in cards), 2),
    }


def render_from_board(
    studio: Studio,
    project: str | int,
    scope: str,
    *,
    shot: int | None = None,
    takes: int = 1,
    settings: RenderSettings | None = None,
) -> list[JobInfo]:
    """Queue takes from the board: ``shot`` (its number) alone, every shot that ``needed`` one (no approved take,
    or a stale one), or ``all`` of them; ``takes`` takes of each."""
    if scope not in BOARD_SCOPES:
        raise InvalidInput(f"must be one of {', '.join(BOARD_SCOPES)}, got {scope!r}", "scope")
    if scope == "shot":
        if shot is None:
            raise InvalidInput("name the shot to render", "shot")
        numbers: list[int] | None = [shot]
    elif scope == "needed":
        numbers = [card.number for card in board(studio, project).shots if card.needs_render]
        if not numbers:
            raise InvalidInput("every shot has an approved take that is not stale: nothing to render", "scope")
    else:
        numbers = None
    return render_queue.queue_renders(studio, project, shots=numbers, takes=takes, settings=settings)
