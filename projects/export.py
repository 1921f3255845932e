"""Exporting a project's edit: the film, a timeline real editors open, and a storyboard contact sheet.

The edit is the project's approved takes in shot order (:func:`plan_edit`), with per-shot in/out trims, optional
crossfades, title cards and a music track, at the project's size and frame rate unless the options say otherwise.
Everything is checked before anything is written: shots without an approved take (listed by number, unless
``allow_missing`` puts a black placeholder in their place or leaves them out), take files that are missing or no
longer match their hash (every file is re-hashed), a music file with no sound in it, a crossfade longer than a
clip allows, an output folder that does not exist or cannot be written.

- The film (:func:`write_film`): where nothing needs re-encoding (no crossfades, titles, placeholders, music or
  trims, and every take an H.264 4:2:0 MP4 of the film's size and rate with the same codec configuration) the
  takes are joined by stream copy; otherwise the film is encoded once from a stream of frames
  (:mod:`pipelines.edit`), whose memory does not grow with the film's length, with progress reports.
- Timelines (:func:`write_timeline`) through OpenTimelineIO and its adapters: ``.otio``, FCP 7 XML (``.xml``),
  CMX 3600 (``.edl``) and Kdenlive (``.kdenlive``). Takes are referenced by absolute ``file://`` URL, or copied
  into a ``<name>_media`` folder beside the timeline and referenced by relative path (``self_contained``).
- The contact sheet (:func:`export_contact_sheet`): every shot's picture with its number, title, duration and
  camera, as one PNG or PDF page.

Every file is written to a temporary name beside its target and renamed into place only when complete, so an
export that fails or is interrupted leaves nothing at the output path (an existing file there stays as it was).
moviepy is not used for the encode: it keeps a reader process open per clip for the
whole film and composites every frame in floating point in Python; on the benchmark's 20 clips at 640x384 it took
1.4-1.8x the time of ffmpeg's own crossfade graph (the budget is 1.5x), where :mod:`pipelines.edit` takes about 1.1x.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pipelines import edit as editing
from pipelines.backend import frames_for
from pipelines.video import VideoError
from projects import queries
from projects.defaults import MISSING_CHOICES
from projects.errors import Conflict, InvalidInput, StudioError
from projects.records import ProjectInfo
from projects.studio import Studio
from projects.validation import clean_fps, clean_side
from storage.models import Shot, Take

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stages ``verify`` (take files), ``encode`` (frames) or ``copy`` (clips).
An exception raised by the callback stops the export, and nothing is left at the output path."""

FILM_SUFFIXES = (".mp4",)
TIMELINE_ADAPTERS = {".otio": "otio_json", ".xml": "fcp_xml", ".edl": "cmx_3600", ".kdenlive": "kdenlive"}
CONTACT_SHEET_SUFFIXES = (".png", ".pdf")
EXPORTS_FOLDER = "exports"  # in the data directory: what the studio writes unless told where


def export_stem(studio: Studio, project_name: str, *, create: bool = True) -> Path:
    """Where an export goes when the user names no path: ``exports/<project>/<project>-<UTC time>`` (add the
    suffix), with ``-2``, ``-3``... when an export of the same second is there already, so every export is kept.
    The folder is created unless ``create`` is False."""
    safe = re.sub(r"[^\w\-]+", "-", project_name, flags=re.UNICODE).strip("-") or "film"
    folder = studio.data_dir / EXPORTS_FOLDER / safe
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    base = f"{safe}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    taken = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    stem, count = base, 1
    while any(name == stem or name.startswith((f"{stem}.", f"{stem}-storyboard.")) for name in taken):
        count += 1
        stem = f"{base}-{count}"
    return folder / stem


TIMECODE_RATES = (24, 25, 30, 48, 50, 60)  # whole SMPTE rates that EDL and FCP 7 XML can state
MAX_CROSSFADE_SECONDS = 60.0
MAX_TITLE_SECONDS = 60.0

# Contact sheet layout, in pixels.
SHEET_COLUMNS = 4
SHEET_CELL_WIDTH = 240
SHEET_GAP = 16
SHEET_HEADER = 44
SHEET_TEXT_LINES = 2
SHEET_LINE_HEIGHT = 18
SHEET_BACKGROUND = (250, 250, 247)
SHEET_EMPTY_PICTURE = (128, 128, 128)  # a shot with no picture yet: a plain grey box
SHEET_PDF_DPI = 96


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
    a dissolve of that many seconds, so the film lasts the sum of its parts less one crossfade per join.
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
    crossfade_frames: int = 0
    audio: Path | None = None
    audio_seconds: float = 0.0  # the music file's own length
    audio_fade: float = 2.0
    crf: int = 18
    skipped_shots: tuple[int, ...] = ()
    placeholder_shots: tuple[int, ...] = ()

    @property
    def frames(self) -> int:
        return sum(item.frames for item in self.items) - self.crossfade_frames * max(0, len(self.items) - 1)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    @property
    def takes(self) -> tuple[EditItem, ...]:
        return tuple(item for item in self.items if item.kind == "take")


# What was written.


@dataclass(frozen=True)
class FilmResult:
    path: Path
    method: str  # "stream copy" or "encode"
    frames: int
    seconds: float
    width: int
    height: int
    fps: int
    audio: bool
    shots: tuple[int, ...]  # shot numbers whose takes are in the film
    skipped_shots: tuple[int, ...]
    placeholder_shots: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "method": self.method,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "audio": self.audio,
            "shots": list(self.shots),
            "skipped_shots": list(self.skipped_shots),
            "placeholder_shots": list(self.placeholder_shots),
        }


@dataclass(frozen=True)
class TimelineResult:
    path: Path
    format: str  # the OpenTimelineIO adapter: otio_json, fcp_xml, cmx_3600, kdenlive
    clips: int  # take clips on the video track
    seconds: float
    rate: float  # the timeline's frame rate (EDL and FCP 7 XML need a SMPTE rate)
    self_contained: bool
    media: tuple[Path, ...]  # the files the timeline refers to

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "clips": self.clips,
            "seconds": round(self.seconds, 3),
            "rate": self.rate,
            "self_contained": self.self_contained,
            "media": [str(path) for path in self.media],
        }


@dataclass(frozen=True)
class ContactSheetResult:
    path: Path
    shots: int
    columns: int
    rows: int
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "shots": self.shots,
            "columns": self.columns,
            "rows": self.rows,
            "width": self.width,
            "height": self.height,
        }


# Planning.


@dataclass(frozen=True)
class _ShotRow:
    number: int
    scene: str
    title: str
    duration: float
    take: _TakeRow | None


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

    crossfade = _seconds(options.crossfade, "crossfade", MAX_CROSSFADE_SECONDS, allow_zero=True)
    crossfade_frames = round(crossfade * fps)
    if crossfade > 0 and crossfade_frames == 0:
        raise InvalidInput(f"{crossfade:g} s is shorter than one frame at {fps} fps", "crossfade")
    audio, audio_seconds = _check_audio(options.audio)
    audio_fade = _seconds(options.audio_fade, "audio_fade", MAX_TITLE_SECONDS * 10, allow_zero=True)
    if not isinstance(options.crf, int) or isinstance(options.crf, bool) or not 0 <= options.crf <= 51:
        raise InvalidInput(f"must be a whole number from 0 to 51, got {options.crf!r}", "crf")

    numbers = {shot.number for shot in shots}
    unknown = sorted(set(options.trims) - numbers)
    if unknown:
        raise InvalidInput(f"project {info.name!r} has no shot {_numbers(unknown)}", "trims")
    cards = _title_cards(options, info, shots)
    items: list[EditItem] = []
    skipped, placeholders = [], []
    for shot in shots:
        items.extend(_card_item(card, fps) for card in cards.get(shot.number, ()))
        if shot.take is None:
            if options.allow_missing == "skip":
                skipped.append(shot.number)
                continue
            placeholders.append(shot.number)
            items.append(EditItem("black", frames_for(shot.duration, fps), shot_number=shot.number, text=shot.title))
            continue
        items.append(_take_item(shot, shot.take, options.trims.get(shot.number), fps))
    items.extend(_card_item(card, fps) for card in cards.get(None, ()))
    if not items:
        raise Conflict(f"nothing to export: every shot of {info.name!r} was left out")
    _check_crossfade(items, crossfade_frames, crossfade)
    return Edit(
        project=info,
        width=width,
        height=height,
        fps=fps,
        items=tuple(items),
        crossfade_frames=crossfade_frames if len(items) > 1 else 0,
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
        rows.append(_ShotRow(shot.position, shot.scene, shot.title, shot.duration, take_row))
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
    try:
        info = editing.probe_audio(path)
    except VideoError as exc:
        raise InvalidInput(f"{path.name} is not an audio file ffmpeg can play ({exc})", "audio") from exc
    if not info.seconds > 0:
        raise InvalidInput(f"{path.name} has no sound in it (its audio lasts 0 seconds)", "audio")
    return path.resolve(), info.seconds


def _seconds(value: Any, field: str, limit: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"must be a number of seconds, got {value!r}", field)
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"must be more than 0 seconds, got {value!r}", field)
    if value > limit:
        raise InvalidInput(f"is {value:g} seconds; the limit is {limit:g}", field)
    return float(value)


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
    cards.extend(options.title_cards)
    last = shots[-1].number
    placed: dict[int | None, list] = {}
    for index, card in enumerate(cards):
        where = f"title_cards[{index}]"
        if not isinstance(card.text, str) or not card.text.strip():
            raise InvalidInput("a title card needs some text", where)
        _seconds(card.seconds, f"{where}.seconds", MAX_TITLE_SECONDS)
        for colour in (card.background, card.color):
            _colour(colour, where)
        if isinstance(card.before_shot, bool) or not isinstance(card.before_shot, int) or card.before_shot < 1:
            raise InvalidInput(f"before_shot must be a shot number from 1, got {card.before_shot!r}", where)
        placed.setdefault(card.before_shot if card.before_shot <= last else None, []).append(card)
    return placed


def _colour(value: str, field: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(value)[:3]
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{value!r} is not a colour (try '#202020' or 'navy')", field) from None


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


def _check_crossfade(items: Sequence[EditItem], frames: int, seconds: float) -> None:
    """A crossfade overlaps each join; a clip joined on both sides must hold two of them, end to end."""
    if frames == 0 or len(items) < 2:
        return
    too_short = []
    for index, item in enumerate(items):
        joins = (index > 0) + (index < len(items) - 1)
        if item.frames < joins * frames:
            too_short.append(f"{_describe(item)} lasts {item.frames} frames, needs {joins * frames}")
    if too_short:
        raise InvalidInput(
            f"a {seconds:g} s crossfade is longer than these clips allow ({'; '.join(too_short)}): "
            "a clip between two crossfades must last at least twice the crossfade; choose a shorter one",
            "crossfade",
        )


def _describe(item: EditItem) -> str:
    if item.kind == "title":
        return f"title card {item.text.splitlines()[0]!r}"
    return f"shot {item.shot_number}" + (" (placeholder)" if item.kind == "black" else "")


def _numbers(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers)


# Output paths.


def check_output_path(path: Path | str, suffixes: Sequence[str], field: str) -> Path:
    """An absolute output path with one of ``suffixes``, in a folder that exists and can be written to.

    Checked by creating (and removing) a temporary file there, since permission bits do not say everything
    (a read-only mount, a root user, an ACL).
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise InvalidInput(f"{path.name!r} must end in {' or '.join(suffixes)}", field)
    path = path.absolute()
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInput(f"the folder {folder} {what}; create it first or choose another", field)
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; name a file", field)
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".check")
    except OSError as exc:
        raise InvalidInput(f"cannot write in the folder {folder}: {exc.strerror or exc}", field) from exc
    os.close(fd)
    Path(name).unlink()
    return path


@contextlib.contextmanager
def _replacing(path: Path, field: str = "out") -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block completes, removed when it fails."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise InvalidInput(f"cannot write in the folder {path.parent}: {exc.strerror or exc}", field) from exc
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        with temp.open("rb") as f:
            os.fsync(f.fileno())
        temp.replace(path)
        with contextlib.suppress(OSError):  # some file systems cannot open a folder to sync it
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        temp.unlink(missing_ok=True)


# The film.


def export_film(
    studio: Studio,
    project: str | int,
    out_path: Path | str,
    options: ExportOptions | None = None,
    progress: Progress | None = None,
) -> FilmResult:
    """Write the project's film to ``out_path`` (an ``.mp4``): plan, check, then stream copy or encode."""
    out = check_output_path(out_path, FILM_SUFFIXES, "out")
    return write_film(plan_edit(studio, project, options, progress=progress), out, progress)


def write_film(edit: Edit, out_path: Path | str, progress: Progress | None = None) -> FilmResult:
    """Write a planned edit as an MP4 (H.264 yuv420p, AAC where there is music)."""
    out = check_output_path(out_path, FILM_SUFFIXES, "out")
    copyable = stream_copy_clips(edit)
    try:
        with _replacing(out) as temp:
            if copyable is not None:
                method = "stream copy"
                frames = sum(clip.frame_count for clip in copyable)
                if progress is not None:
                    progress("copy", 0, len(copyable))
                editing.join_copy([item.path for item in edit.takes], temp)  # type: ignore[misc]
                if progress is not None:
                    progress("copy", len(copyable), len(copyable))
            else:
                method = "encode"
                frames = _encode(edit, temp, progress)
    except VideoError as exc:
        raise StudioError(f"could not write the film {out.name}: {exc}") from exc
    log.info("wrote %s (%s, %d frames)", out, method, frames)
    return FilmResult(
        path=out,
        method=method,
        frames=frames,
        seconds=frames / edit.fps,
        width=edit.width,
        height=edit.height,
        fps=edit.fps,
        audio=edit.audio is not None,
        shots=tuple(item.shot_number for item in edit.takes if item.shot_number is not None),
        skipped_shots=edit.skipped_shots,
        placeholder_shots=edit.placeholder_shots,
    )


def stream_copy_clips(edit: Edit) -> list[editing.Mp4Video] | None:
    """The takes' video tracks when the film can be joined by stream copy; None when it must be encoded.

    Only plain cuts of whole takes qualify, each an H.264 4:2:0 8-bit MP4 at the film's size and rate, all with
    the same codec configuration (a joined MP4 carries one).
    """
    if (
        edit.crossfade_frames
        or edit.audio is not None
        or any(item.kind != "take" or item.trimmed for item in edit.items)
    ):
        return None
    clips = []
    for item in edit.items:
        try:
            clip = editing.read_mp4_video(item.path)  # type: ignore[arg-type]
        except VideoError as exc:
            log.info("encoding the film: %s", exc)
            return None
        if not clip.is_h264_yuv420p or (clip.width, clip.height) != (edit.width, edit.height) or clip.fps != edit.fps:
            return None
        if clips and not clip.joinable_with(clips[0]):
            return None
        clips.append(clip)
    return clips


def _encode(edit: Edit, out: Path, progress: Progress | None) -> int:
    segments: list[editing.Segment] = []
    black = editing.black_yuv420p(edit.width, edit.height)
    for item in edit.items:
        if item.kind == "take":
            assert item.path is not None
            start = item.source_start / item.take_fps
            segments.append(editing.ClipSource(item.path, item.frames, start))
        elif item.kind == "title":
            card = title_card_picture(item.text, edit.width, edit.height, item.background, item.color)
            segments.append(editing.StillSource(editing.rgb_to_yuv420p(np.asarray(card)), item.frames))
        else:
            segments.append(editing.StillSource(black, item.frames))
    audio = None
    if edit.audio is not None:
        audio = editing.AudioTrack(edit.audio, edit.seconds, min(edit.audio_fade, edit.seconds))
    report = (lambda done, total: progress("encode", done, total)) if progress is not None else None
    return editing.render_film(
        segments,
        out,
        width=edit.width,
        height=edit.height,
        fps=edit.fps,
        crossfade_frames=edit.crossfade_frames,
        audio=audio,
        crf=edit.crf,
        progress=report,
    )


def title_card_picture(text: str, width: int, height: int, background: str, color: str) -> Image.Image:
    """A title card: ``text`` centred on a plain ``background``, its first line larger than the rest."""
    image = Image.new("RGB", (width, height), _colour(background, "title_background"))
    draw = ImageDraw.Draw(image)
    lines = text.splitlines() or [""]
    size = max(8, height // 8)
    fonts = [_font(size)] + [_font(max(8, size * 2 // 3))] * (len(lines) - 1)
    fitted = [_fit(draw, line, font, width - width // 10) for line, font in zip(lines, fonts, strict=True)]
    heights = [draw.textbbox((0, 0), line or " ", font=font)[3] for line, font in zip(fitted, fonts, strict=True)]
    spacing = size // 3
    y = (height - sum(heights) - spacing * (len(lines) - 1)) / 2
    for line, font, line_height in zip(fitted, fonts, heights, strict=True):
        draw.text((width / 2, y), line, font=font, fill=_colour(color, "title_color"), anchor="ma")
        y += line_height + spacing
    return image


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


# Timelines.


def export_timeline(
    studio: Studio,
    project: str | int,
    out_path: Path | str,
    options: ExportOptions | None = None,
    *,
    self_contained: bool = False,
) -> TimelineResult:
    """Write the project's edit as a timeline (``.otio``, ``.xml``, ``.edl`` or ``.kdenlive``)."""
    out = check_output_path(out_path, tuple(TIMELINE_ADAPTERS), "timeline")
    return write_timeline(plan_edit(studio, project, options), out, self_contained=self_contained)


def timeline_rate(fps: int, adapter: str) -> int:
    """The timeline's frame rate: the film's, except where the format can only state SMPTE timecode rates.

    There the rate is the smallest such rate that is a whole multiple of the film's (8 fps -> 24, 16 -> 48), so
    every cut still falls on a frame; failing that, the nearest one.
    """
    if adapter not in ("cmx_3600", "fcp_xml") or fps in TIMECODE_RATES:
        return fps
    multiples = [rate for rate in TIMECODE_RATES if rate % fps == 0]
    return multiples[0] if multiples else min(TIMECODE_RATES, key=lambda rate: (abs(rate - fps), rate))


def write_timeline(edit: Edit, out_path: Path | str, *, self_contained: bool = False) -> TimelineResult:
    """Write a planned edit as a timeline; with ``self_contained`` the media is copied beside it.

    What each format keeps, as its OpenTimelineIO adapter writes it: ``.otio`` everything; FCP 7 XML the takes,
    dissolves, title cards as Text generators and the music track; CMX 3600 the video track only (cards and
    placeholders as black events, dissolves as ``D`` events); Kdenlive the takes, cards as plain colour clips and
    the music, with cuts where the film dissolves (the adapter writes no transitions).
    """
    import opentimelineio as otio

    out = check_output_path(out_path, tuple(TIMELINE_ADAPTERS), "timeline")
    adapter = TIMELINE_ADAPTERS[out.suffix.lower()]
    rate = timeline_rate(edit.fps, adapter)
    sources = [item.path for item in edit.takes if item.path is not None]
    if edit.audio is not None:
        sources.append(edit.audio)
    links = _copy_media(edit, out) if self_contained else {path: path.as_uri() for path in sources}
    timeline = build_otio_timeline(edit, rate, links, adapter=adapter)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the Kdenlive adapter prints notices on stdout
            text = otio.adapters.write_to_string(timeline, adapter_name=adapter)
    except Exception as exc:  # adapters raise their own error types: any of them is the export's failure
        raise StudioError(f"OpenTimelineIO could not write {out.name} ({adapter}): {exc}") from exc
    if adapter == "kdenlive":
        text = _kdenlive_profile(text, edit, rate)
    with _replacing(out, "timeline") as temp:
        temp.write_text(text, encoding="utf-8")
    media = (
        tuple(out.parent / link for link in dict.fromkeys(links.values()))
        if self_contained
        else tuple(dict.fromkeys(sources))
    )
    return TimelineResult(
        path=out,
        format=adapter,
        clips=len(edit.takes),
        seconds=edit.seconds,
        rate=float(rate),
        self_contained=self_contained,
        media=media,
    )


def build_otio_timeline(edit: Edit, rate: int, links: Mapping[Path, str], *, adapter: str = "otio_json") -> Any:
    """The edit as an OpenTimelineIO timeline at ``rate``, as long as the film, shaped for ``adapter``.

    A crossfade becomes a dissolve centred on the cut: each clip shows its media up to the middle of the
    crossfade, and the rest of it is the handle the dissolve draws on. Placeholders are gaps. Title cards are what
    each format can hold: a colour generator (OTIO, Kdenlive), a Text generator (FCP 7 XML), a black event (EDL,
    whose ``BL`` reel also stands in for placeholders, so that a trailing one keeps its length). The music is an
    audio track of the file looped or cut to the film's length.
    """
    import opentimelineio as otio

    def at(frames: int) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(_rescale(frames, edit.fps, rate), rate)

    def span(start: int, length: int) -> otio.opentime.TimeRange:
        return otio.opentime.TimeRange(at(start), at(length))

    timeline = otio.schema.Timeline(name=edit.project.name, global_start_time=otio.opentime.RationalTime(0, rate))
    timeline.metadata["continuity"] = {
        "project": edit.project.name,
        "width": edit.width,
        "height": edit.height,
        "fps": edit.fps,
        "crossfade_frames": edit.crossfade_frames,
    }
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(video)
    crossfade = edit.crossfade_frames
    before, after = crossfade // 2, crossfade - crossfade // 2  # a dissolve's part before and after the cut
    previous: Any = None
    for index, item in enumerate(edit.items):
        head = before if index > 0 else 0
        tail = after if index < len(edit.items) - 1 else 0
        shown = item.frames - head - tail
        metadata = {"kind": item.kind, "shot": item.shot_number, "text": item.text}
        piece: Any
        if item.kind == "take":
            assert item.path is not None
            take_length = otio.opentime.RationalTime(round(item.take_frames / item.take_fps * rate), rate)
            start = otio.opentime.RationalTime(round(item.source_start / item.take_fps * rate), rate) + at(head)
            piece = otio.schema.Clip(
                name=_clip_name(item),
                media_reference=otio.schema.ExternalReference(
                    target_url=links[item.path],
                    available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), take_length),
                ),
                source_range=otio.opentime.TimeRange(start, at(shown)),
            )
            metadata.update(take_id=item.take_id, take_number=item.take_number)
        elif item.kind == "title" or adapter == "cmx_3600":
            reference = _generator(item, adapter)
            reference.available_range = span(0, item.frames)
            piece = otio.schema.Clip(name=_clip_name(item), media_reference=reference, source_range=span(head, shown))
            if adapter == "cmx_3600":
                piece.metadata["cmx_3600"] = {"reel": "BL"}
            metadata.update(color=item.color, background=item.background)
        else:
            piece = otio.schema.Gap(name=_clip_name(item), source_range=span(0, shown))
        if crossfade and isinstance(previous, otio.schema.Clip) and isinstance(piece, otio.schema.Clip):
            video.append(
                otio.schema.Transition(
                    name="Dissolve",
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=at(before),
                    out_offset=at(after),
                )
            )
        piece.metadata["continuity"] = metadata
        video.append(piece)
        previous = piece
    if edit.audio is not None:
        music = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
        timeline.tracks.append(music)
        film = at(edit.frames)
        length = otio.opentime.RationalTime(round(edit.audio_seconds * rate), rate)
        placed = otio.opentime.RationalTime(0, rate)
        loops = math.ceil(film.value / length.value) if length.value > 0 else 0
        for loop in range(1, loops + 1):
            part = min(length, film - placed)
            clip = otio.schema.Clip(
                # Distinct names: the FCP 7 XML writer folds clips that are equal into one back-reference.
                name=edit.audio.name if loops == 1 else f"{edit.audio.name} ({loop} of {loops})",
                media_reference=otio.schema.ExternalReference(
                    target_url=links[edit.audio],
                    available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), length),
                ),
                source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), part),
            )
            music.append(clip)
            placed += part
    return timeline


def _generator(item: EditItem, adapter: str) -> Any:
    import opentimelineio as otio

    if adapter == "cmx_3600":
        return otio.schema.GeneratorReference(name="Black", generator_kind="black")
    if adapter == "fcp_xml":
        # FCP 7's own Text generator (white text over black), which Premiere and Resolve import.
        parameter = {"parameterid": "str", "name": "Text", "value": item.text.replace("\n", "\r")}
        effect = {"effectcategory": "Text", "effecttype": "generator", "mediatype": "video", "parameter": parameter}
        return otio.schema.GeneratorReference(name="Text", generator_kind="Text", metadata={"fcp_xml": effect})
    return otio.schema.GeneratorReference(
        name="Title card", generator_kind="SolidColor", parameters={"color": item.background}
    )


def _rescale(frames: int, fps: int, rate: int) -> int:
    return frames * rate // fps if rate % fps == 0 else round(frames * rate / fps)


def _clip_name(item: EditItem) -> str:
    if item.kind == "title":
        return "Title: " + " / ".join(item.text.splitlines())
    name = f"Shot {item.shot_number}"
    if item.kind == "black":
        return f"{name} (no approved take)"
    return f"{name} take {item.take_number}" + (f": {item.text}" if item.text else "")


def _copy_media(edit: Edit, out: Path) -> dict[Path, str]:
    """Copy the takes (and music) into ``<timeline name>_media`` beside the timeline; links relative to it."""
    folder = out.parent / f"{out.stem}_media"
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create {folder}: {exc.strerror or exc}", "timeline") from exc
    links: dict[Path, str] = {}
    copies: list[tuple[Path, Path]] = []
    for item in edit.takes:
        assert item.path is not None
        if item.path not in links:
            name = f"shot{item.shot_number:03d}-take{item.take_number:02d}{item.path.suffix}"
            copies.append((item.path, folder / name))
            links[item.path] = f"{folder.name}/{name}"
    if edit.audio is not None:
        name = f"music{edit.audio.suffix.lower()}"
        copies.append((edit.audio, folder / name))
        links[edit.audio] = f"{folder.name}/{name}"
    for source, target in copies:
        try:
            with _replacing(target, "timeline") as temp:
                shutil.copyfile(source, temp)
        except OSError as exc:
            raise StudioError(f"could not copy {source.name} to {target}: {exc.strerror or exc}") from exc
    return links


def _kdenlive_profile(text: str, edit: Edit, rate: int) -> str:
    """The adapter writes a 1080p profile and no length: give the project the film's size, and end it with it.

    Without an end, MLT plays the background track's default length (minutes of black) after the film.
    """
    from xml.etree import ElementTree as ET

    root = ET.fromstring(text)
    profile = root.find("profile")
    if profile is not None:
        divisor = math.gcd(edit.width, edit.height)
        profile.set("description", f"{edit.width}x{edit.height} {rate} fps")
        profile.set("width", str(edit.width))
        profile.set("height", str(edit.height))
        profile.set("display_aspect_num", str(edit.width // divisor))
        profile.set("display_aspect_den", str(edit.height // divisor))
    last = str(max(0, edit.frames - 1))
    for producer in root.iter("producer"):
        if producer.get("id") == "black_track":
            producer.set("in", "0")
            producer.set("out", last)
    for tractor in root.iter("tractor"):
        if tractor.get("global_feed") == "1":
            tractor.set("in", "0")
            tractor.set("out", last)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


# The contact sheet.


@dataclass(frozen=True)
class _SheetShot:
    number: int
    title: str
    prompt: str
    duration: float
    camera: str
    picture: Path | None


def export_contact_sheet(studio: Studio, project: str | int, out_path: Path | str) -> ContactSheetResult:
    """Every shot of the storyboard in a grid: its picture as the storyboard shows it (the approved take's thumbnail,
    else the newest finished take's, else its keyframe, else a grey box), number, title, duration and camera; one
    PNG, or one PDF page."""
    out = check_output_path(out_path, CONTACT_SHEET_SUFFIXES, "contact_sheet")
    with studio.read() as session:
        row = queries.find_project(session, project)
        info = queries.project_info(session, row)
        shots = _sheet_shots(session, studio, row.id)
    if not shots:
        raise Conflict(f"project {info.name!r} has no shots for a contact sheet")
    sheet, columns, rows = contact_sheet_image(info, shots)
    with _replacing(out, "contact_sheet") as temp:
        if out.suffix.lower() == ".pdf":
            sheet.save(temp, format="PDF", resolution=SHEET_PDF_DPI)
        else:
            sheet.save(temp, format="PNG")
    return ContactSheetResult(out, len(shots), columns, rows, sheet.width, sheet.height)


def _sheet_shots(session: Any, studio: Studio, project_id: int) -> list[_SheetShot]:
    """The shots with the picture the storyboard shows for each (one rule, :func:`queries.shot_infos`)."""
    shots = session.scalars(
        select(Shot).where(Shot.project_id == project_id).order_by(Shot.position).options(*queries.SHOT_LOADING)
    ).all()
    return [
        _SheetShot(info.number, info.title, info.prompt, info.duration, info.camera, info.picture)
        for info in queries.shot_infos(session, studio.media, shots)
    ]


def contact_sheet_layout(shots: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``(columns, rows, cell width, picture height)`` of a sheet of ``shots`` from a ``width`` x ``height`` film."""
    columns = min(SHEET_COLUMNS, max(1, shots))
    rows = math.ceil(shots / columns)
    picture_height = max(1, round(SHEET_CELL_WIDTH * height / width))
    return columns, rows, SHEET_CELL_WIDTH, picture_height


def contact_sheet_size(shots: int, width: int, height: int) -> tuple[int, int]:
    """The sheet's pixel size: a header, then rows of cells (picture and two lines of text) with gaps around."""
    columns, rows, cell_width, picture_height = contact_sheet_layout(shots, width, height)
    cell_height = picture_height + SHEET_TEXT_LINES * SHEET_LINE_HEIGHT + SHEET_GAP // 2
    return (
        columns * cell_width + (columns + 1) * SHEET_GAP,
        SHEET_HEADER + rows * cell_height + (rows + 1) * SHEET_GAP,
    )


def contact_sheet_image(info: ProjectInfo, shots: Sequence[_SheetShot]) -> tuple[Image.Image, int, int]:
    columns, rows, cell_width, picture_height = contact_sheet_layout(len(shots), info.width, info.height)
    size = contact_sheet_size(len(shots), info.width, info.height)
    cell_height = picture_height + SHEET_TEXT_LINES * SHEET_LINE_HEIGHT + SHEET_GAP // 2
    sheet = Image.new("RGB", size, SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    heading, text_font = _font(20), _font(13)
    total = sum(shot.duration for shot in shots)
    draw.text(
        (SHEET_GAP, SHEET_GAP),
        _fit(draw, f"{info.name} · {len(shots)} shots · {total:.1f} s", heading, size[0] - 2 * SHEET_GAP),
        font=heading,
        fill=(20, 20, 20),
    )
    for index, shot in enumerate(shots):
        column, row = index % columns, index // columns
        x = SHEET_GAP + column * (cell_width + SHEET_GAP)
        y = SHEET_HEADER + SHEET_GAP + row * (cell_height + SHEET_GAP)
        sheet.paste(_sheet_picture(shot.picture, cell_width, picture_height), (x, y))
        title = shot.title or shot.prompt
        lines = [f"{shot.number}  {title}", f"{shot.duration:g} s · {shot.camera}"]
        for line_index, line in enumerate(lines):
            draw.text(
                (x, y + picture_height + 4 + line_index * SHEET_LINE_HEIGHT),
                _fit(draw, line, text_font, cell_width),
                font=text_font,
                fill=(30, 30, 30) if line_index == 0 else (90, 90, 90),
            )
    return sheet, columns, rows


def _sheet_picture(path: Path | None, width: int, height: int) -> Image.Image:
    """The picture fitted inside the cell on black (its aspect kept), or a grey box where there is none."""
    box = Image.new("RGB", (width, height), SHEET_EMPTY_PICTURE)
    if path is None:
        return box
    try:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        log.warning("contact sheet: cannot read %s (%s); leaving a grey box", path, exc)
        return box
    picture = ImageOps.contain(picture, (width, height), Image.Resampling.LANCZOS)
    if picture.size != (width, height):
        framed = Image.new("RGB", (width, height), (0, 0, 0))
        framed.paste(picture, ((width - picture.width) // 2, (height - picture.height) // 2))
        picture = framed
    return picture
