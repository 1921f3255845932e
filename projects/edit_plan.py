"""Planning a project's edit: what goes into the film, checked against the database and the media store.

The edit (:func:`plan_edit`) is the project's approved takes in shot order, with per-shot in/out trims, crossfades
(one for the film, or per cut), title cards and a music track, at the project's size and frame rate unless the options
say otherwise. The cut saved with each shot (:mod:`projects.cut`) is used unless the options say otherwise.
Everything is checked before anything is written: shots without an approved take (listed by number, unless
``allow_missing`` puts a black placeholder in their place or leaves them out), take files that are missing or no
longer match their hash (every file is re-hashed), a music file with no sound in it, a crossfade longer than a
clip allows. The music is read only as an audio file (a playlist naming other files is refused, see
:mod:`pipelines.ffmpeg`). The :class:`Edit` it returns holds no database rows, so the film and the timeline are
written from it after the session has closed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pipelines.backend import frames_for
from pipelines.ffmpeg import VideoError
from pipelines.probe import AUDIO_EXTENSIONS_HINT, probe_audio
from projects import queries
from projects.defaults import MISSING_CHOICES
from projects.drawing import colour
from projects.errors import Conflict, InvalidInput, StudioError
from projects.records import ProjectInfo
from projects.studio import Studio
from projects.validation import clean_fps, clean_seconds, clean_side
from storage.models import MAX_CROSSFADE_SECONDS, Shot, Take

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stages ``verify`` (take files), ``encode`` (frames) or ``copy`` (clips).
An exception raised by the callback stops the export, and nothing is left at the output path."""

MAX_TITLE_SECONDS = 60.0


# What the caller asks for.


@dataclass(frozen=True)
class Trim:
    """Which part of a shot's approved take goes into the film: ``start`` to ``end`` seconds (None: to its end)."""

    start: float = 0.0
    end: float | None = None


@dataclass(frozen=True)
class TitleCard:
    """Text on a plain colour for ``seconds``, placed before shot ``before_shot`` (past the last shot: at the end)."""

    text: str
    before_shot: int = 1
    seconds: float = 2.0
    background: str = "#000000"
    color: str = "#ffffff"


@dataclass(frozen=True)
class ExportOptions:
    """How to cut the edit. Size and frame rate default to the project's; clips of another size or rate are
    conformed (fitted inside the frame on black, resampled in time).

    ``titles`` adds an opening card with the project's name and a card where each scene begins (its scene label
    and the title of its first shot); ``title_cards`` places cards of the caller's own. ``trims`` maps shot
    numbers to the part of their take to use. ``crossfade`` joins every pair of neighbours (clips and cards) with
    a dissolve of that many seconds, so the film lasts the sum of its parts less one crossfade per join;
    ``crossfades`` maps shot numbers to the dissolve into that shot from what comes before it (0: a hard cut).
    With ``saved_cut`` the shots' saved trims, crossfades and title cards come first, and ``trims``,
    ``crossfades`` and ``title_cards`` are laid over them (a trim or crossfade given here replaces the saved one).
    ``audio`` is a music track looped or cut to the film's length, faded out over ``audio_fade`` seconds.
    """

    width: int | None = None
    height: int | None = None
    fps: int | None = None
    crossfade: float = 0.0
    titles: bool = False
    title_cards: tuple[TitleCard, ...] = ()
    title_seconds: float = 2.0
    title_background: str = "#000000"
    title_color: str = "#ffffff"
    trims: Mapping[int, Trim] = field(default_factory=dict)
    crossfades: Mapping[int, float] = field(default_factory=dict)
    saved_cut: bool = True
    audio: Path | None = None
    audio_fade: float = 2.0
    allow_missing: str | None = None  # None: refuse; "black": a placeholder; "skip": leave the shot out
    crf: int = 18


# The edit, planned.


@dataclass(frozen=True)
class EditItem:
    """One piece of the film: an approved take (or part of it), a title card, or a black placeholder."""

    kind: str  # "take", "title" or "black"
    frames: int  # at the film's frame rate, before crossfades overlap it with its neighbours
    shot_number: int | None = None
    text: str = ""  # the shot's title, or the card's text
    take_id: int | None = None
    take_number: int | None = None
    path: Path | None = None
    take_fps: int = 0
    take_frames: int = 0  # the whole take, at its own rate
    source_start: int = 0  # first frame used, at the take's rate
    source_frames: int = 0  # frames used, at the take's rate
    background: str = "#000000"
    color: str = "#ffffff"

    @property
    def trimmed(self) -> bool:
        return self.kind == "take" and (self.source_start > 0 or self.source_frames < self.take_frames)


@dataclass(frozen=True)
class Edit:
    """The film as planned from the database: checked, and independent of any open session."""

    project: ProjectInfo
    width: int
    height: int
    fps: int
    items: tuple[EditItem, ...]
    joins: tuple[int, ...] = ()  # the dissolve between items[i] and items[i + 1], in frames (0: a cut)
    audio: Path | None = None
    audio_seconds: float = 0.0  # the music file's own length
    audio_fade: float = 2.0
    crf: int = 18
    skipped_shots: tuple[int, ...] = ()
    placeholder_shots: tuple[int, ...] = ()

    @property
    def frames(self) -> int:
        return sum(item.frames for item in self.items) - sum(self.joins)

    @property
    def crossfaded(self) -> bool:
        return any(self.joins)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    @property
    def takes(self) -> tuple[EditItem, ...]:
        return tuple(item for item in self.items if item.kind == "take")


# Planning.


@dataclass(frozen=True)
class _ShotRow:
    number: int
    scene: str
    title: str
    duration: float
    take: _TakeRow | None
    trim: Trim | None = None
    crossfade: float | None = None
    card: str = ""


@dataclass(frozen=True)
class _TakeRow:
    id: int
    take_number: int
    sha256: str
    extension: str
    path: Path
    fps: int
    num_frames: int


def plan_edit(
    studio: Studio, project: str | int, options: ExportOptions | None = None, *, progress: Progress | None = None
) -> Edit:
    """The project's edit as ``options`` ask, with every input checked and every take file re-hashed."""
    options = options or ExportOptions()
    if options.allow_missing not in (None, *MISSING_CHOICES):
        raise InvalidInput(f"must be 'black' or 'skip', got {options.allow_missing!r}", "allow_missing")
    with studio.read() as session:
        row = queries.find_project(session, project)
        info = queries.project_info(session, row)
        shots = _shot_rows(session, studio, row.id)
    width = clean_side(options.width if options.width is not None else info.width, "width")
    height = clean_side(options.height if options.height is not None else info.height, "height")
    fps = clean_fps(options.fps if options.fps is not None else info.fps)
    if not shots:
        raise Conflict(f"project {info.name!r} has no shots to export")

    missing = [shot.number for shot in shots if shot.take is None]
    if missing and options.allow_missing is None:
        raise Conflict(
            f"shots without an approved take: {_numbers(missing)}; approve a take for each, or export with "
            "missing shots as black placeholders or left out (allow_missing 'black' or 'skip', "
            "--allow-missing on the command line)"
        )
    _verify_takes(studio, [shot for shot in shots if shot.take is not None], progress)

    crossfade = clean_seconds(options.crossfade, "crossfade", MAX_CROSSFADE_SECONDS, allow_zero=True)
    crossfade_frames = _fade_frames(crossfade, fps, "crossfade")
    audio, audio_seconds = _check_audio(options.audio)
    audio_fade = clean_seconds(options.audio_fade, "audio_fade", MAX_TITLE_SECONDS * 10, allow_zero=True)
    if not isinstance(options.crf, int) or isinstance(options.crf, bool) or not 0 <= options.crf <= 51:
        raise InvalidInput(f"must be a whole number from 0 to 51, got {options.crf!r}", "crf")

    numbers = {shot.number for shot in shots}
    for name, given in (("trims", options.trims), ("crossfades", options.crossfades)):
        unknown = sorted(set(given) - numbers)
        if unknown:
            raise InvalidInput(f"project {info.name!r} has no shot {_numbers(unknown)}", name)
    saved = options.saved_cut
    trims = {s.number: s.trim for s in shots if saved and s.trim is not None} | dict(options.trims)
    fades = {s.number: s.crossfade for s in shots if saved and s.crossfade is not None}
    for number, seconds in options.crossfades.items():
        fades[number] = clean_seconds(seconds, f"crossfades[{number}]", MAX_CROSSFADE_SECONDS, allow_zero=True)
    cards = _title_cards(options, info, shots)
    items: list[EditItem] = []
    joins: list[int] = []  # into each item after the first

    def place(item: EditItem, fade: int) -> None:
        if items:
            joins.append(fade)
        items.append(item)

    skipped, placeholders = [], []
    for shot in shots:
        into = crossfade_frames
        if shot.number in fades:
            into = _fade_frames(fades[shot.number], fps, f"shot {shot.number}'s crossfade")
        before = [_card_item(card, fps) for card in cards.get(shot.number, ())]
        if shot.take is None and options.allow_missing == "skip":
            skipped.append(shot.number)
            clip = None
        elif shot.take is None:
            placeholders.append(shot.number)
            clip = EditItem("black", frames_for(shot.duration, fps), shot_number=shot.number, text=shot.title)
        else:
            clip = _take_item(shot, shot.take, trims.get(shot.number), fps)
        for card in before:
            place(card, crossfade_frames)  # the shot's own crossfade is the join into the shot itself
        if clip is not None:
            place(clip, into)
    for card in cards.get(None, ()):
        place(_card_item(card, fps), crossfade_frames)
    if not items:
        raise Conflict(f"nothing to export: every shot of {info.name!r} was left out")
    _check_crossfades(items, joins)
    return Edit(
        project=info,
        width=width,
        height=height,
        fps=fps,
        items=tuple(items),
        joins=tuple(joins),
        audio=audio,
        audio_seconds=audio_seconds,
        audio_fade=audio_fade,
        crf=options.crf,
        skipped_shots=tuple(skipped),
        placeholder_shots=tuple(placeholders),
    )


def _shot_rows(session: Any, studio: Studio, project_id: int) -> list[_ShotRow]:
    shots = session.scalars(select(Shot).where(Shot.project_id == project_id).order_by(Shot.position)).all()
    approved = {
        take.shot_id: take
        for take in session.scalars(
            select(Take)
            .join(Shot, Shot.id == Take.shot_id)
            .where(Shot.project_id == project_id, Take.approved, Take.status == "done")
            .options(selectinload(Take.video))
        )
    }
    rows = []
    for shot in shots:
        take = approved.get(shot.id)
        take_row = None
        if take is not None and take.video is not None:
            take_row = _TakeRow(
                id=take.id,
                take_number=take.take_number,
                sha256=take.video.sha256,
                extension=take.video.extension,
                path=studio.media.path_for(take.video.sha256, take.video.extension),
                fps=take.fps,
                num_frames=take.num_frames,
            )
        trim = Trim(shot.cut_in, shot.cut_out) if shot.cut_in > 0 or shot.cut_out is not None else None
        rows.append(
            _ShotRow(
                shot.position,
                shot.scene,
                shot.title,
                shot.duration,
                take_row,
                trim=trim,
                crossfade=shot.cut_crossfade,
                card=shot.cut_title,
            )
        )
    return rows


def _verify_takes(studio: Studio, shots: Sequence[_ShotRow], progress: Progress | None) -> None:
    """Re-hash every take file the film uses; any that is missing or changed stops the export, listed."""
    problems = []
    for done, shot in enumerate(shots, start=1):
        assert shot.take is not None
        problem = studio.media.check(shot.take.sha256, shot.take.extension)
        if problem:
            problems.append(f"shot {shot.number} (take {shot.take.take_number}): {problem} at {shot.take.path}")
        if progress is not None:
            progress("verify", done, len(shots))
    if problems:
        raise StudioError(
            "take files are missing or damaged: "
            + "; ".join(problems)
            + ". Render those shots again or approve other takes ('python app.py verify' checks the whole store)"
        )


def _check_audio(path: Path | str | None) -> tuple[Path | None, float]:
    if path is None:
        return None, 0.0
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist or is not a file", "audio")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name} is empty (0 bytes)", "audio")
    try:
        info = probe_audio(path)  # read only as an audio file: a playlist naming other files is refused
    except VideoError as exc:
        said = str(exc) if path.name in str(exc) else f"{path.name}: {exc}"
        raise InvalidInput(f"{said}; choose a {AUDIO_EXTENSIONS_HINT} file", "audio") from exc
    if not info.seconds > 0:
        raise InvalidInput(f"{path.name} has no sound in it (its audio lasts 0 seconds)", "audio")
    return path.resolve(), info.seconds


def _title_cards(options: ExportOptions, info: ProjectInfo, shots: Sequence[_ShotRow]) -> dict[int | None, list]:
    """Cards by the shot they come before (None: after the last shot)."""
    cards: list[TitleCard] = []
    if options.titles:
        style = {
            "seconds": options.title_seconds,
            "background": options.title_background,
            "color": options.title_color,
        }
        cards.append(TitleCard(info.name, before_shot=shots[0].number, **style))
        scene = None
        for shot in shots:
            if shot.scene and shot.scene != scene:
                text = f"Scene {shot.scene}" + (f"\n{shot.title}" if shot.title else "")
                cards.append(TitleCard(text, before_shot=shot.number, **style))
            scene = shot.scene or scene
    if options.saved_cut:
        style = {"seconds": options.title_seconds, "background": options.title_background}
        cards.extend(
            TitleCard(shot.card, before_shot=shot.number, color=options.title_color, **style)
            for shot in shots
            if shot.card
        )
    cards.extend(options.title_cards)
    last = shots[-1].number
    placed: dict[int | None, list] = {}
    for index, card in enumerate(cards):
        where = f"title_cards[{index}]"
        if not isinstance(card.text, str) or not card.text.strip():
            raise InvalidInput("a title card needs some text", where)
        clean_seconds(card.seconds, f"{where}.seconds", MAX_TITLE_SECONDS)
        for value in (card.background, card.color):
            colour(value, where)
        if isinstance(card.before_shot, bool) or not isinstance(card.before_shot, int) or card.before_shot < 1:
            raise InvalidInput(f"before_shot must be a shot number from 1, got {card.before_shot!r}", where)
        placed.setdefault(card.before_shot if card.before_shot <= last else None, []).append(card)
    return placed


def _card_item(card: TitleCard, fps: int) -> EditItem:
    return EditItem(
        "title",
        max(1, round(card.seconds * fps)),
        text=card.text.strip(),
        background=card.background,
        color=card.color,
    )


def _take_item(shot: _ShotRow, take: _TakeRow, trim: Trim | None, fps: int) -> EditItem:
    start, count = 0, take.num_frames
    if trim is not None:
        where = f"trims[{shot.number}]"
        length = take.num_frames / take.fps
        start_s = trim.start
        end_s = length if trim.end is None else trim.end
        for value in (start_s, end_s):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInput(f"in and out points must be seconds, got {value!r}", where)
        if not 0 <= start_s < end_s <= length + 0.5 / take.fps:
            raise InvalidInput(
                f"in {start_s:g} s and out {end_s:g} s must satisfy 0 <= in < out <= {length:g} s "
                f"(the length of shot {shot.number}'s approved take)",
                where,
            )
        start = round(start_s * take.fps)
        count = min(take.num_frames, round(end_s * take.fps)) - start
        if count < 1:
            raise InvalidInput(f"keeps less than one frame of shot {shot.number}'s take", where)
    frames = count if take.fps == fps else max(1, round(count / take.fps * fps))
    return EditItem(
        "take",
        frames,
        shot_number=shot.number,
        text=shot.title,
        take_id=take.id,
        take_number=take.take_number,
        path=take.path,
        take_fps=take.fps,
        take_frames=take.num_frames,
        source_start=start,
        source_frames=count,
    )


def _fade_frames(seconds: float, fps: int, where: str) -> int:
    frames = round(seconds * fps)
    if seconds > 0 and frames == 0:
        raise InvalidInput(f"{seconds:g} s is shorter than one frame at {fps} fps", where)
    return frames


def _check_crossfades(items: Sequence[EditItem], joins: Sequence[int]) -> None:
    """A crossfade overlaps its join; a piece must hold the dissolves at both of its ends, one after the other."""
    too_short = []
    for index, item in enumerate(items):
        needs = (joins[index - 1] if index > 0 else 0) + (joins[index] if index < len(joins) else 0)
        if item.frames < needs:
            too_short.append(f"{_describe(item)} lasts {item.frames} frames, needs {needs}")
    if too_short:
        raise InvalidInput(
            f"crossfades longer than these clips allow ({'; '.join(too_short)}): a clip must last at least as "
            "long as the crossfades at both of its ends; choose shorter ones",
            "crossfade",
        )


def _describe(item: EditItem) -> str:
    if item.kind == "title":
        return f"title card {item.text.splitlines()[0]!r}"
    return f"shot {item.shot_number}" + (" (placeholder)" if item.kind == "black" else "")


def _numbers(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers)
