"""Checking a bundle's rows and media as strictly as what users type and upload: a bundle comes from anywhere.

Every row of ``project.json`` goes through the checks a storyboard file and the command line use
(:mod:`projects.validation`: names, texts, prompts, durations, cameras, seeds, sizes, frame rates); shots must be
numbered 1..N in order; a take's parameters must have the types that rendering again and a take's inputs read
(:func:`projects.render_queue.render_again`, :mod:`projects.take_inputs`, ``RenderSettings.from_params``); every
name a row gives (a shot's characters, a take input's character) must be one of the bundle's characters. A shot's
drawn pictures (keyframe candidates) must be drawn (``done``), numbered once per frame (first or last), at most one
approved per frame, sized as the studio's frames are, with the fields the candidate lists and the command line show
(scores, settings) of the types they read. Media must be what the studio makes itself: a picture
:func:`projects.images.check_image` accepts, under its own extension, or an MP4 video; and a file is used as what it
is (no video as a reference image or as a drawn picture).

:func:`check_document` cleans the rows in place (names NFC-normalised, cameras as the studio writes them), and
returns how each media file is used; :func:`check_media_file` checks one extracted file against that. Both raise
:class:`InvalidInput` naming the row and field, and never echo a raw control character (values are shown with
``repr``).

The module is longer than most here on purpose: it is every check a bundle's rows get, read in one place, as
``tests/test_hostile_bundles.py`` tables them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from projects.bundle_format import FINISHED
from projects.cut import clean_cut
from projects.errors import InvalidInput
from projects.images import check_image
from projects.render_queue import RenderSettings
from projects.storyboard import MAX_TITLE_LENGTH, clean_shot_fields
from projects.validation import (
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PROMPT_LENGTH,
    MAX_REFERENCES,
    clean_camera,
    clean_duration,
    clean_flag,
    clean_fps,
    clean_name,
    clean_seed,
    clean_side,
    clean_text,
    name_key,
)
from storage.models import PICTURE_INPUT_ROLES, SCORE_METRICS, SHOT_PICTURE_ROLES, TAKE_INPUT_ROLES

PICTURES = ("png", "jpg", "webp")  # what check_image accepts, by the extension it gives
VIDEOS = ("mp4",)  # what the worker encodes
MEDIA_EXTENSIONS = PICTURES + VIDEOS
MAX_COUNT = 1_000_000  # numbers, positions and frame counts: far above any real one, far below SQLite's limit
MAX_ERROR_LENGTH = 100_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ORIGIN = re.compile(r"[0-9a-f]{32}")
_BACKEND = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
# Boxes an MP4 may hold right after its 'ftyp' box.
_TOP_BOXES = {b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"meta", b"pdin", b"moof", b"styp", b"sidx"}


@dataclass(frozen=True)
class MediaUse:
    """How the rows use a media file: as a ``picture`` or a ``video``, and where first."""

    kind: str
    where: str


def kind_of(extension: str) -> str:
    return "video" if extension in VIDEOS else "picture"


@contextmanager
def _within(where: str) -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise exc.within(where) from None


# Values.


def _object(value: Any, field: str, *, optional: bool = False) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"must be an object, got {type(value).__name__}", field)
    return value


def _list(value: Any, field: str, limit: int = MAX_COUNT) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"must be a list, got {type(value).__name__}", field)
    if len(value) > limit:
        raise InvalidInput(f"has {len(value)} entries; the limit is {limit}", field)
    return value


def _rows(value: Any, field: str, limit: int = MAX_COUNT) -> list[dict[str, Any]]:
    rows = _list(value, field, limit)
    for i, row in enumerate(rows, start=1):
        _object(row, f"{field}[{i}]")
    return rows


def _whole(value: Any, field: str, low: int = 0, high: int = MAX_COUNT, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        more = " or null" if optional else ""
        raise InvalidInput(f"must be a whole number from {low} to {high}{more}, got {value!r}", field)
    return value


def _number(value: Any, field: str, low: float = -math.inf, high: float = math.inf, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        span = "" if math.isinf(low) and math.isinf(high) else f" from {low:g} to {high:g}"
        raise InvalidInput(f"must be a number{span}{' or null' if optional else ''}, got {value!r}", field)
    return value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"must be true or false, got {value!r}", field)
    return value


def _one_of(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        words = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise InvalidInput(f"must be {words}, got {value!r}", field)
    return value


def _time(row: dict[str, Any], key: str) -> None:
    value = row.get(key)
    if value is None:
        return
    try:
        if not isinstance(value, str):
            raise ValueError
        datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"must be a date and time (ISO 8601) or null, got {value!r}", key) from None


def _backend(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _BACKEND.fullmatch(value):
        raise InvalidInput(f"must be a backend's name (letters, digits, '.', '_', '+', '-'), got {value!r}", field)
    return value


def _words(value: Any, field: str) -> str:
    """A short text shown in a terminal as it is: no control characters."""
    text = clean_text(value, field, max_length=200)
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise InvalidInput("must not contain control characters", field)
    return text


def _media(value: Any, field: str, kind: str, uses: dict[str, MediaUse], where: str, *, required: bool = False) -> Any:
    """A media file's SHA-256 in a row, noted as used as ``kind`` (a picture or a video)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidInput(f"is not a media name (64 hexadecimal digits), got {value!r}", field)
    seen = uses.get(value)
    if seen is None:
        uses[value] = MediaUse(kind, where)
    elif seen.kind != kind:
        picture, video = (where, seen.where) if kind == "picture" else (seen.where, where)
        raise InvalidInput(f"media {value[:12]} is used both as a picture ({picture}) and as a video ({video})", field)
    return value


# Rows.


def check_manifest(manifest: dict[str, Any]) -> None:
    """The manifest's own fields (its media list and schema revision are checked where they are read)."""
    origin = manifest.get("origin")
    if origin is not None and (not isinstance(origin, str) or not _ORIGIN.fullmatch(origin)):
        raise InvalidInput(f"must be 32 hexadecimal digits or absent, got {origin!r}", "origin")
    _time(manifest, "created_at")


def check_document(document: dict[str, Any]) -> dict[str, MediaUse]:
    """Check and clean ``project.json``'s rows in place; returns how each media file is used, by SHA-256."""
    uses: dict[str, MediaUse] = {}
    with _within("project"):
        info = _object(document.get("project"), "project")
        if info.get("name") not in (None, ""):
            info["name"] = clean_name(info["name"], "name")
        for side in ("width", "height"):
            if side in info:
                info[side] = clean_side(info[side], side)
        if "fps" in info:
            info["fps"] = clean_fps(info["fps"], "fps")
        _time(info, "created_at")
        _time(info, "copied_at")
    characters: dict[str, str] = {}  # name key -> where
    for i, row in enumerate(_rows(document.get("characters"), "characters"), start=1):
        where = f"character {i}"
        with _within(where):
            _character(row, where, characters, uses)
    shots = _rows(document.get("shots"), "shots")
    for i, row in enumerate(shots, start=1):
        where = f"shot {i}"
        with _within(where):
            if row.get("position") != i or isinstance(row.get("position"), bool):
                raise InvalidInput(
                    f"is numbered {row.get('position')!r}; shots are numbered 1 to {len(shots)} in order, without "
                    "gaps",
                    "position",
                )
            _shot(row, where, characters, uses)
    return uses


def _character(row: dict[str, Any], where: str, characters: dict[str, str], uses: dict[str, MediaUse]) -> None:
    row["name"] = clean_name(row.get("name"), "name")
    key = name_key(row["name"])
    if key in characters:
        raise InvalidInput(f"is already used by {characters[key]}", "name")
    characters[key] = where
    row["description"] = clean_text(row.get("description"), "description", max_length=MAX_DESCRIPTION_LENGTH)
    _time(row, "created_at")
    positions: set[int] = set()
    pictures: set[str] = set()
    for j, ref in enumerate(_rows(row.get("references"), "references", MAX_REFERENCES), start=1):
        with _within(f"reference {j}"):
            sha256 = _media(ref.get("sha256"), "sha256", "picture", uses, f"{where} reference {j}", required=True)
            position = _whole(ref.get("position"), "position")
            if position in positions or sha256 in pictures:
                raise InvalidInput("repeats another reference image of the character (its position or picture)")
            positions.add(position)
            pictures.add(sha256)
            ref["original_name"] = clean_text(ref.get("original_name"), "original_name", max_length=255)
            _whole(ref.get("width"), "width", 1)  # replaced by the picture's own size where the bundle holds it
            _whole(ref.get("height"), "height", 1)
            _time(ref, "created_at")


def _named(name: Any, field: str, characters: dict[str, str]) -> str:
    """A character name a row gives, which must be one of the bundle's characters."""
    text = clean_text(name, field, max_length=MAX_NAME_LENGTH, required=True)
    if name_key(text) not in characters:
        raise InvalidInput(f"names an unknown character {text!r}; the bundle has no character of that name", field)
    return text


def _shot(row: dict[str, Any], where: str, characters: dict[str, str], uses: dict[str, MediaUse]) -> None:
    names = _list(row.get("characters"), "characters")
    fields = clean_shot_fields(
        prompt=row.get("prompt"),
        duration=row.get("duration"),
        scene=row.get("scene", ""),
        title=row.get("title", ""),
        camera=row.get("camera", "static"),
        characters=names,
        keyframe_character=row.get("keyframe_character"),
        continue_from_previous=row.get("continue_from_previous", False),
        last_frame_from_next=row.get("last_frame_from_next", False),
    )
    keys = [name_key(_named(name, f"characters[{i}]", characters)) for i, name in enumerate(fields.characters)]
    if len(set(keys)) != len(keys):
        raise InvalidInput("names a character twice", "characters")
    if fields.keyframe_character is not None:
        _named(fields.keyframe_character, "keyframe_character", characters)
    keyframe = _media(row.get("keyframe_sha256"), "keyframe_sha256", "picture", uses, f"{where} keyframe")
    if keyframe is not None and fields.keyframe_character is not None:
        raise InvalidInput("give a keyframe image or a keyframe character, not both", "keyframe_sha256")
    ending = _media(row.get("last_frame_sha256"), "last_frame_sha256", "picture", uses, f"{where} last frame")
    if ending is not None and fields.last_frame_from_next:
        raise InvalidInput("give a last frame or end on the next shot's first frame, not both", "last_frame_sha256")
    row.update(
        prompt=fields.prompt,
        duration=fields.duration,
        scene=fields.scene,
        title=fields.title,
        camera=fields.camera,
        characters=list(fields.characters),
        keyframe_character=fields.keyframe_character,
        continue_from_previous=fields.continue_from_previous,
        last_frame_from_next=fields.last_frame_from_next,
        stale=clean_flag(row.get("stale", False), "stale"),
    )
    cut = clean_cut(row.get("cut_in", 0.0), row.get("cut_out"), row.get("cut_crossfade"), row.get("cut_title", ""))
    row.update(cut_in=cut.cut_in, cut_out=cut.cut_out, cut_crossfade=cut.crossfade, cut_title=cut.card)
    _time(row, "created_at")
    numbers: set[int] = set()
    approved = 0
    # A take's prompt is the shot's with its characters' descriptions (render_queue.model_prompt).
    longest = MAX_PROMPT_LENGTH + len(characters) * (MAX_NAME_LENGTH + MAX_DESCRIPTION_LENGTH + 4) + 2
    for j, take in enumerate(_rows(row.get("takes"), "takes"), start=1):
        with _within(f"take {j}"):
            number = _whole(take.get("take_number"), "take_number", 1)
            if number in numbers:
                raise InvalidInput(f"the shot has take number {number} twice", "take_number")
            numbers.add(number)  # type: ignore[arg-type]
            _take(take, f"{where} take {j}", longest, characters, uses)
            approved += take["approved"]
            if approved > 1:
                raise InvalidInput("the shot has more than one approved take", "approved")
    drawn: set[tuple[str, int]] = set()
    chosen: set[str] = set()  # the frames with an approved picture
    for j, picture in enumerate(_rows(row.get("pictures"), "pictures"), start=1):
        with _within(f"picture {j}"):
            _picture(picture, f"{where} picture {j}", longest, characters, uses)
            role, number = picture["role"], picture["number"]
            if (role, number) in drawn:
                raise InvalidInput(f"the shot has {role} frame candidate {number} twice", "number")
            drawn.add((role, number))
            if picture["approved"] and role in chosen:
                raise InvalidInput(f"the shot has more than one approved {role} frame", "approved")
            if picture["approved"]:
                chosen.add(role)


def _take(
    take: dict[str, Any], where: str, longest: int, characters: dict[str, str], uses: dict[str, MediaUse]
) -> None:
    take["status"] = _one_of(take.get("status", "done"), "status", FINISHED)
    take["backend"] = _backend(take.get("backend"), "backend")
    take["seed"] = clean_seed(take.get("seed"))
    take["prompt"] = clean_text(take.get("prompt"), "prompt", max_length=longest, required=True)
    take["width"] = clean_side(take.get("width"), "width")
    take["height"] = clean_side(take.get("height"), "height")
    take["fps"] = clean_fps(take.get("fps"))
    _whole(take.get("num_frames"), "num_frames", 1)
    take["params"] = _params(_object(take.get("params"), "params", optional=True))
    video = _media(take.get("video_sha256"), "video_sha256", "video", uses, f"{where} video")
    _media(take.get("thumbnail_sha256"), "thumbnail_sha256", "picture", uses, f"{where} thumbnail")
    if take["status"] == "done" and video is None:
        raise InvalidInput("a done take has no video", "video_sha256")
    for key in ("timings", "provenance"):
        _object(take.get(key), key, optional=True)
    if take.get("error") is not None:
        take["error"] = clean_text(take["error"], "error", max_length=MAX_ERROR_LENGTH)
    take["approved"] = _bool(take.get("approved", False), "approved")
    if take["approved"] and take["status"] != "done":
        raise InvalidInput(f"only a done take can be approved; this one is {take['status']}", "approved")
    source = take.get("source_take")
    if source is not None:
        _object(source, "source_take")
        _whole(source.get("shot"), "source_take.shot", 1)
        _whole(source.get("take_number"), "source_take.take_number", 1, optional=True)
    for key in ("created_at", "started_at", "finished_at"):
        _time(take, key)
    slots: set[tuple[str, int]] = set()
    for i, item in enumerate(_rows(take.get("inputs"), "inputs"), start=1):
        with _within(f"input {i}"):
            role = _one_of(item.get("role"), "role", TAKE_INPUT_ROLES)
            position = _whole(item.get("position", 0), "position")
            if (role, position) in slots:
                raise InvalidInput(f"repeats the {role} picture at position {position}")
            slots.add((role, position))  # type: ignore[arg-type]
            _media(item.get("sha256"), "sha256", "picture", uses, f"{where} input {i}", required=True)
            if item.get("character") is not None:
                item["character"] = _named(item["character"], "character", characters)
    scored: set[tuple[str, str]] = set()
    for i, score in enumerate(_rows(take.get("scores"), "scores"), start=1):
        with _within(f"score {i}"):
            embedder = clean_text(score.get("embedder"), "embedder", max_length=200, required=True)
            metric = _one_of(score.get("metric"), "metric", SCORE_METRICS)
            if (embedder, metric) in scored:
                raise InvalidInput(f"repeats the {metric} score of {embedder!r}")
            scored.add((embedder, metric))
            _number(score.get("value"), "value", 0, 1)
            _object(score.get("details"), "details", optional=True)
            _time(score, "created_at")


def _picture(
    picture: dict[str, Any], where: str, longest: int, characters: dict[str, str], uses: dict[str, MediaUse]
) -> None:
    """A shot's drawn picture (a keyframe candidate). Only drawn ones travel: nothing would draw a queued one."""
    picture["role"] = _one_of(picture.get("role"), "role", SHOT_PICTURE_ROLES)
    picture["number"] = _whole(picture.get("number"), "number", 1)
    if picture.get("status", "done") != "done":
        raise InvalidInput(f"must be done (only drawn pictures travel), got {picture.get('status')!r}", "status")
    picture["status"] = "done"
    # The name is not looked up among the keyframe backends: a drawn picture is never drawn again from its row,
    # and a newer studio's backend is a fine record of where it came from.
    picture["backend"] = _backend(picture.get("backend"), "backend")
    picture["seed"] = clean_seed(picture.get("seed"))
    picture["prompt"] = clean_text(picture.get("prompt"), "prompt", max_length=longest, required=True)
    picture["width"] = clean_side(picture.get("width"), "width")
    picture["height"] = clean_side(picture.get("height"), "height")
    _media(picture.get("image_sha256"), "image_sha256", "picture", uses, f"{where} image", required=True)
    picture["approved"] = _bool(picture.get("approved", False), "approved")
    params = _object(picture.get("params"), "params", optional=True)
    with _within("params"):
        settings = _object(params.get("settings", {}), "settings")
        with _within("settings"):  # what drawing it again reads (picture_inputs.prepare)
            if "backend" in settings:
                _backend(settings["backend"], "backend")
            _whole(settings.get("steps"), "steps", 1, optional=True)
            _number(settings.get("guidance"), "guidance", optional=True)
            clean_text(settings.get("negative_prompt", ""), "negative_prompt", max_length=MAX_PROMPT_LENGTH)
        _object(params.get("generation"), "generation", optional=True)
        _list(params.get("notes"), "notes")
    for key in ("timings", "provenance"):
        _object(picture.get(key), key, optional=True)
    scores = _object(picture.get("scores"), "scores", optional=True)
    with _within("scores"):  # as the candidate lists show them: numbers, and each character's score and verdict
        for key in ("identity", "look", "continuity"):
            _number(scores.get(key), key, optional=True)
        for key in ("embedder", "face_model"):
            _words(scores.get(key), key)
        for name, part in _object(scores.get("characters"), "characters", optional=True).items():
            with _within(f"characters[{clean_name(name, 'name')!r}]"):
                _number(_object(part, "character").get("score"), "score", optional=True)
                _words(part.get("verdict"), "verdict")
    for key in ("created_at", "started_at", "finished_at"):
        _time(picture, key)
    positions: set[int] = set()
    for i, item in enumerate(_rows(picture.get("inputs"), "inputs"), start=1):
        with _within(f"input {i}"):
            _one_of(item.get("role"), "role", PICTURE_INPUT_ROLES)
            position = _whole(item.get("position", 0), "position")
            if position in positions:
                raise InvalidInput(f"repeats the picture at position {position}", "position")
            positions.add(position)  # type: ignore[arg-type]
            _media(item.get("sha256"), "sha256", "picture", uses, f"{where} input {i}", required=True)
            if item.get("character") is not None:
                item["character"] = _named(item["character"], "character", characters)


def _params(params: dict[str, Any]) -> dict[str, Any]:
    """A take's parameters, with the types that rendering again and resolving its pictures read."""
    with _within("params"):
        settings = _object(params.get("settings", {}), "settings")
        with _within("settings"):
            if "backend" in settings:
                _backend(settings["backend"], "backend")
            _whole(settings.get("steps"), "steps", 1, optional=True)
            _number(settings.get("guidance"), "guidance", optional=True)
            clean_text(settings.get("negative_prompt", ""), "negative_prompt", max_length=MAX_PROMPT_LENGTH)
            _bool(settings.get("refiner", False), "refiner")
            _whole(settings.get("refiner_steps"), "refiner_steps", 1, optional=True)
            _number(settings.get("refiner_strength", 0.3), "refiner_strength", 0, 1)
            _bool(settings.get("caption", True), "caption")
            RenderSettings.from_params(settings)
        if "camera" in params:
            params["camera"] = clean_camera(params["camera"])
        if "duration" in params:
            params["duration"] = clean_duration(params["duration"])
        if "title" in params:
            params["title"] = clean_text(params["title"], "title", max_length=MAX_TITLE_LENGTH)
        if params.get("model_source") is not None:
            clean_text(params["model_source"], "model_source", max_length=4000)
            if not isinstance(params["model_source"], str):
                raise InvalidInput(f"must be text or null, got {params['model_source']!r}", "model_source")
        if "requested_frames" in params:
            _whole(params["requested_frames"], "requested_frames", 1)
        _object(params.get("generation"), "generation", optional=True)
        _list(params.get("notes"), "notes")
        if params.get("pinned_inputs") is not None:
            _pinned(_object(params["pinned_inputs"], "pinned_inputs"))
    return params


def _pinned(pinned: dict[str, Any]) -> None:
    """The pictures of a take rendered again. Their character and take ids are those of the data directory it was
    rendered in, other rows here, so they are left out; the pictures themselves are named by hash."""
    with _within("pinned_inputs"):
        for i, item in enumerate(_rows(pinned.get("inputs"), "inputs"), start=1):
            with _within(f"inputs[{i}]"):
                _one_of(item.get("role"), "role", TAKE_INPUT_ROLES)
                _whole(item.get("position"), "position")
                if not isinstance(item.get("sha256"), str) or not _SHA256.fullmatch(item["sha256"]):
                    raise InvalidInput(f"is not a media name, got {item.get('sha256')!r}", "sha256")
                item["character_id"] = None
        pinned["source_take_id"] = None
        pinned["from_take_id"] = None


# Media.


def check_extension(name: str, extension: str) -> None:
    """Only the kinds of file the studio makes itself may come in a bundle."""
    if extension not in MEDIA_EXTENSIONS:
        raise InvalidInput(f"a bundle may hold only {', '.join(PICTURES)} and {', '.join(VIDEOS)} files", name)


def check_media_file(path: Path, name: str, extension: str, use: MediaUse | None) -> tuple[int, int] | None:
    """An extracted media file, by its content: a picture the studio accepts under its own extension (its size
    returned, as an upload's is measured), or an MP4 (None)."""
    check_extension(name, extension)
    size = None
    if extension in PICTURES:
        checked = check_image(path, name)
        if checked.extension != extension:
            raise InvalidInput(f"holds a {checked.extension} picture but is named .{extension}", name)
        size = (checked.width, checked.height)
    else:
        _check_mp4(path, name)
    if use is not None and use.kind != kind_of(extension):
        raise InvalidInput(f"is a {kind_of(extension)}, but {use.where} uses it as a {use.kind}", name)
    return size


def measured_references(document: dict[str, Any], sizes: dict[str, tuple[int, int]]) -> None:
    """Reference images take their width and height from the pictures themselves, as an upload does."""
    for character in document.get("characters") or []:
        for ref in character.get("references") or []:
            if ref["sha256"] in sizes:
                ref["width"], ref["height"] = sizes[ref["sha256"]]


def _check_mp4(path: Path, name: str) -> None:
    """An MP4 begins with its 'ftyp' box (a four-letter brand), followed by another top-level box."""
    with path.open("rb") as f:
        head = f.read(64)
        size = int.from_bytes(head[:4], "big") if len(head) >= 8 else 0
        brand = head[8:12]
        printable = len(brand) == 4 and all(32 <= byte < 127 for byte in brand)
        ok = head[4:8] == b"ftyp" and 16 <= size <= 4096 and size % 4 == 0 and printable
        if ok:
            f.seek(size)
            following = f.read(8)[4:8]
            ok = following in _TOP_BOXES
    if not ok:
        raise InvalidInput("is not an MP4 video (it does not begin with an 'ftyp' box and a known box after it)", name)
