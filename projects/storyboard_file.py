"""Importing a storyboard file (JSON, or CSV with the same shot columns) in one transaction.

The whole file is read and checked (every field, every image) before the database is touched; then the
project, its characters with their reference images, and its shots are written in a single transaction.
A storyboard with any error imports nothing, and the error names the shot or character and the field.

Importing into a project that already exists appends the shots after its last one; characters named in
the file must then be new to the project, and shots may name the project's existing characters too.

Paths in a storyboard (reference images, keyframes) are relative to the storyboard file and must stay
inside its folder, so a storyboard handed over by someone else cannot read files elsewhere on the machine.

JSON is read by :func:`parse_json`, which refuses what Python's parser lets through silently: a key given twice in
one object (the last would win) and NaN or Infinity. Two imports of one storyboard started together make one
project: whichever writes second finds the project made meanwhile and is refused, rather than adding every shot a
second time.

A storyboard uploaded through the page comes as one ``.zip`` (the storyboard with its folders, laid out as the README
shows) or as loose files, which a browser upload flattens to their bare names; :func:`import_upload` rebuilds the
storyboard's folder from either in a private staging folder, imports it, and removes the folder whatever happens.
A zip is untrusted input: :func:`_unpack_zip` says what it may not hold.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from sqlalchemy import func, select

from projects import queries
from projects.cast import attach_reference, new_character
from projects.errors import Conflict, InvalidInput, StudioError
from projects.images import CheckedImage, check_image
from projects.records import ImportResult
from projects.storyboard import ShotFields, append_shots, clean_shot_fields
from projects.studio import Studio
from projects.validation import (
    MAX_DESCRIPTION_LENGTH,
    MAX_REFERENCES,
    clean_fps,
    clean_name,
    clean_side,
    clean_text,
    name_key,
)
from storage.models import Project

MAX_STORYBOARD_BYTES = 10 * 1024 * 1024
MAX_SHOTS = 5000
MAX_CHARACTERS = 200
TOP_FIELDS = {"project", "settings", "characters", "shots"}
SETTINGS_FIELDS = {"width", "height", "fps"}
CHARACTER_FIELDS = {"name", "description", "references"}
SHOT_FIELDS = (
    "scene",
    "title",
    "prompt",
    "characters",
    "duration",
    "camera",
    "keyframe",
    "keyframe_character",
    "continue_from_previous",
    "last_frame",
    "last_frame_from_next",
)
REQUIRED_SHOT_FIELDS = ("prompt", "duration")


@dataclass(frozen=True)
class CharacterPlan:
    name: str
    description: str
    references: tuple[CheckedImage, ...]


@dataclass(frozen=True)
class StoryboardPlan:
    """A storyboard file, fully checked, ready to be written."""

    project: str | None
    settings: dict[str, int]
    characters: tuple[CharacterPlan, ...]
    shots: tuple[ShotFields, ...]


class JsonProblem(ValueError):
    """JSON that Python's parser would take but the studio refuses (the message says why)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise JsonProblem(f"the key {key!r} appears twice in one object; JSON would keep only the last, silently")
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise JsonProblem(f"{name} is not a number JSON allows")


def parse_json(text: str) -> Any:
    """``json.loads``, refusing a key given twice in one object and NaN or Infinity (:class:`JsonProblem`).

    Also raises ``json.JSONDecodeError``, ``RecursionError`` (nested too deeply) and ``ValueError`` (a number too
    long to read), which callers turn into their own messages.
    """
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def json_failure(exc: Exception) -> str:
    """What is wrong with JSON that :func:`parse_json` refused, in words."""
    if isinstance(exc, json.JSONDecodeError):
        return f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    if isinstance(exc, JsonProblem):
        return f"is not usable JSON: {exc}"
    if isinstance(exc, RecursionError):
        return "is not usable JSON: it is nested too deeply"
    return f"is not valid JSON ({exc})"


def read_storyboard(path: Path) -> StoryboardPlan:
    """Parse and check a ``.json`` or ``.csv`` storyboard; raise :class:`InvalidInput` on the first problem."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"storyboard file not found: {path}")
    size = path.stat().st_size
    if size > MAX_STORYBOARD_BYTES:
        raise InvalidInput(f"{path.name} is {size / 2**20:.1f} MiB; a storyboard may be at most 10 MiB")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path.name} is not UTF-8 text (byte {exc.start})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(text, path)
    if suffix == ".csv":
        return _from_csv(text, path)
    raise InvalidInput(f"{path.name}: a storyboard is a .json or .csv file")


def import_storyboard(studio: Studio, path: Path, *, project: str | None = None) -> ImportResult:
    """Create (or extend) a project from a storyboard file, all or nothing."""
    path = Path(path)
    with studio.read() as session:
        # Project ids are never handed out twice: a project with a larger id was made after this import began.
        newest = session.scalar(select(func.max(Project.id))) or 0
    plan = read_storyboard(path)
    name = clean_name(project if project is not None else (plan.project or path.stem), "project name")
    with studio.write() as session:
        row = session.scalar(select(Project).where(Project.name_key == name_key(name)))
        if row is not None and row.id > newest:
            raise Conflict(
                f"project {row.name!r} already exists: it was created while this import of {path.name} was "
                "running (the same storyboard imported twice at once?); nothing was imported"
            )
        created = row is None
        if row is None:
            row = Project(name=name, name_key=name_key(name), **plan.settings)
            session.add(row)
            session.flush()
        else:
            for key, value in plan.settings.items():
                if getattr(row, key) != value:
                    raise InvalidInput(
                        f"project {row.name!r} has {key} {getattr(row, key)} but the storyboard says {value}; "
                        "remove the setting from the storyboard or import it as a new project",
                        f"settings.{key}",
                    )
        references = 0
        for i, plan_character in enumerate(plan.characters, start=1):
            where = f"character {i} ({plan_character.name})"
            try:
                character = new_character(session, row, plan_character.name, plan_character.description)
                for image in plan_character.references:
                    attach_reference(studio, session, character, image)
                    references += 1
            except InvalidInput as exc:
                raise exc.within(where) from None
            except StudioError as exc:
                raise type(exc)(f"{where}: {exc}") from None
        append_shots(studio, session, row, plan.shots)
        return ImportResult(
            project=queries.project_info(session, row),
            created_project=created,
            characters_added=len(plan.characters),
            shots_added=len(plan.shots),
            references_added=references,
        )


def _from_json(text: str, path: Path) -> StoryboardPlan:
    try:
        data = parse_json(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{path.name} {json_failure(exc)}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path.name} must hold a JSON object with 'shots' (and 'characters', 'settings')")
    _no_unknown(data, TOP_FIELDS, "storyboard")
    project = clean_name(data["project"], "project") if data.get("project") is not None else None
    settings = _settings(data.get("settings", {}))
    characters = _list(data.get("characters", []), "characters", MAX_CHARACTERS)
    shots = _list(data.get("shots"), "shots", MAX_SHOTS, required=True)
    cast = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(characters, start=1):
        where = f"character {i}"
        if not isinstance(entry, dict):
            raise InvalidInput("must be an object with 'name', 'description', 'references'", where)
        _no_unknown(entry, CHARACTER_FIELDS, where)
        try:
            name = clean_name(entry.get("name"), "name")
            where = f"character {i} ({name})"
            if name_key(name) in seen:
                raise InvalidInput(f"the name {name!r} is already used by {seen[name_key(name)]}", "name")
            seen[name_key(name)] = f"character {i}"
            description = clean_text(entry.get("description"), "description", max_length=MAX_DESCRIPTION_LENGTH)
            refs = _list(entry.get("references", []), "references", MAX_REFERENCES)
            images = tuple(_image(path, ref, f"references[{j}]") for j, ref in enumerate(refs))
            hashes = [image.path.resolve() for image in images]
            if len(set(hashes)) != len(hashes):
                raise InvalidInput("the same file is listed twice", "references")
        except InvalidInput as exc:
            raise exc.within(where) from None
        cast.append(CharacterPlan(name, description, images))
    plans = []
    for i, entry in enumerate(shots, start=1):
        if not isinstance(entry, dict):
            raise InvalidInput("must be an object with at least 'prompt' and 'duration'", f"shot {i}")
        plans.append(_shot(entry, path, f"shot {i}"))
    return StoryboardPlan(project, settings, tuple(cast), tuple(plans))


def _from_csv(text: str, path: Path) -> StoryboardPlan:
    reader = csv.DictReader(io.StringIO(text), delimiter=csv_delimiter(text))
    header = [(column or "").strip().lower() for column in (reader.fieldnames or [])]
    if not header:
        raise InvalidInput(f"{path.name} is empty; a CSV storyboard starts with a header row")
    missing = [column for column in REQUIRED_SHOT_FIELDS if column not in header]
    if missing:
        raise InvalidInput(
            f"{path.name} is missing column(s) {', '.join(missing)}; the columns are {', '.join(SHOT_FIELDS)}"
        )
    unknown = [column for column in header if column not in SHOT_FIELDS]
    if unknown:
        raise InvalidInput(
            f"{path.name} has unknown column(s) {', '.join(unknown)}; the columns are {', '.join(SHOT_FIELDS)}"
        )
    if len(set(header)) != len(header):
        raise InvalidInput(f"{path.name} names a column twice")
    reader.fieldnames = header
    plans = []
    try:
        for row in reader:
            if None in row:
                raise InvalidInput(
                    f"has more cells than the header has columns (line {reader.line_num})", f"shot {len(plans) + 1}"
                )
            if not any((value or "").strip() for value in row.values()):
                continue  # a blank line in a spreadsheet export
            if len(plans) >= MAX_SHOTS:
                raise InvalidInput(f"{path.name} has more than {MAX_SHOTS} shots")
            entry = {key: value for key, value in row.items() if value is not None and value.strip() != ""}
            for key in REQUIRED_SHOT_FIELDS:
                entry.setdefault(key, "")
            plans.append(_shot(entry, path, f"shot {len(plans) + 1} (line {reader.line_num})"))
    except csv.Error as exc:
        raise InvalidInput(f"{path.name} is not a readable CSV file ({exc})") from None
    if not plans:
        raise InvalidInput(f"{path.name} has a header but no shots")
    return StoryboardPlan(None, {}, (), tuple(plans))


def csv_delimiter(text: str) -> str:
    """The header line's delimiter: a comma, else a semicolon (European spreadsheets), else a tab.

    Only the delimiter is guessed, and only from the header, whose cells are known column names; quoting is
    always the standard double quote, so a line of dialogue in apostrophes cannot confuse the reader.
    """
    header = text.lstrip("\r\n").splitlines()[0] if text.strip() else ""
    counts = {delimiter: header.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _shot(entry: dict[str, Any], storyboard: Path, where: str) -> ShotFields:
    _no_unknown(entry, set(SHOT_FIELDS), where)
    for key in REQUIRED_SHOT_FIELDS:
        if key not in entry:
            raise InvalidInput("is required", f"{where}.{key}")
    try:
        keyframe = entry.get("keyframe")
        image = _image(storyboard, keyframe, "keyframe") if keyframe not in (None, "") else None
        ending = entry.get("last_frame")
        last = _image(storyboard, ending, "last_frame") if ending not in (None, "") else None
        pictures = ("keyframe", "last_frame")
        fields = clean_shot_fields(**{key: value for key, value in entry.items() if key not in pictures})
        if last is not None and fields.last_frame_from_next:
            raise InvalidInput("give a last frame or end on the next shot's first frame, not both", "last_frame")
    except InvalidInput as exc:
        raise exc.within(where) from None
    if image is not None and fields.keyframe_character:
        raise InvalidInput("give a keyframe image or a keyframe character, not both", f"{where}.keyframe")
    return ShotFields(**{**fields.__dict__, "keyframe": image, "last_frame": last})


def _image(storyboard: Path, value: Any, field: str) -> CheckedImage:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("must be a file path relative to the storyboard", field)
    relative = value.strip()
    windows = PureWindowsPath(relative)
    if PurePosixPath(relative).is_absolute() or windows.is_absolute() or windows.drive:
        raise InvalidInput(f"{relative!r} is an absolute path; paths are relative to the storyboard file", field)
    folder = storyboard.resolve().parent
    resolved = (folder / relative).resolve()
    if not resolved.is_relative_to(folder):
        raise InvalidInput(f"{relative!r} points outside the storyboard's folder", field)
    if not resolved.exists():
        raise InvalidInput(f"file not found: {relative} (looked in {folder})", field)
    return check_image(resolved, field)


def _settings(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise InvalidInput("must be an object with width, height and fps", "settings")
    _no_unknown(value, SETTINGS_FIELDS, "settings")
    settings = {}
    if "width" in value:
        settings["width"] = clean_side(value["width"], "settings.width")
    if "height" in value:
        settings["height"] = clean_side(value["height"], "settings.height")
    if "fps" in value:
        settings["fps"] = clean_fps(value["fps"], "settings.fps")
    return settings


def _list(value: Any, field: str, limit: int, *, required: bool = False) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise InvalidInput("must be a list" + (" and is required" if required else ""), field)
    if len(value) > limit:
        raise InvalidInput(f"has {len(value)} entries; the limit is {limit}", field)
    return value


def _no_unknown(entry: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in entry if key not in known)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(known))}", where)
