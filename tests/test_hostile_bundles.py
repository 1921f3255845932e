"""Hostile bundles and storyboards: every bad input tried, what the user is told, and that nothing changed.

A bundle comes from anywhere, as an upload does: each row of its ``project.json`` goes through the checks a
storyboard file or the command line gets, and each media file through the checks of an upload (a picture is
decoded and must be PNG, JPEG or WebP under its own extension; a video must be an MP4). One bad row or file and the
whole bundle is refused, unpacked or merged: no row, no media file, nothing left in the store's temporary folder.
The table below is the record of what was tried; each row is run as an unpack into an empty data directory and as
a merge into the project the bundle came from.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from projects import bundles, cast, keyframes, project, render_queue, storyboard, takes
from projects.errors import InvalidInput
from projects.storyboard_file import import_storyboard
from projects.studio import Studio, open_studio
from projects.validation import MAX_DESCRIPTION_LENGTH, MAX_PROMPT_LENGTH, MAX_REFERENCES
from projects.worker import RenderWorker
from storage import media as media_rows
from storage.models import Base, MediaObject

HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="9"/></svg>\n'
ESCAPE = "\x1b]0;owned\x07\x1b[2J\x1b[31mFilm"


# The good bundle every hostile one is made from: two shots, one character, four finished takes, and two drawn
# first-frame candidates of the second shot (the first approved: its keyframe).


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]) -> Path:
    folder = tmp_path_factory.mktemp("source")
    studio = open_studio(folder / "data")
    try:
        project.create_project(studio, "Film", width=64, height=64, fps=8)
        cast.add_character(studio, "Film", "Mara", references=[photos["astronaut"]])
        storyboard.add_shot(studio, "Film", prompt="Mara climbs the stairs", duration=1.0, keyframe_character="Mara")
        storyboard.add_shot(studio, "Film", prompt="the lamp turns", duration=1.0, keyframe=photos["coffee"])
        render_queue.queue_renders(studio, "Film", takes=2, seed=10)
        with RenderWorker(studio, score=False) as worker:
            assert worker.run(once=True) == 4
        takes.approve_take(studio, takes.list_takes(studio, "Film", shot_number=1).items[0].id)
        keyframes.queue_keyframes(studio, "Film", shots=[2], candidates=2, seed=3)
        with RenderWorker(studio, device="cpu") as worker:
            assert worker.run(once=True) == 2
        keyframes.approve_keyframe(studio, keyframes.list_keyframes(studio, "Film", shot_number=2)[0].id)
        return bundles.pack_project(studio, "Film", folder / "good.zip", takes="all").path
    finally:
        studio.close()


@dataclass
class Parts:
    """A bundle taken apart: its manifest and document as objects, media members by name, members given verbatim."""

    manifest: dict[str, Any]
    document: dict[str, Any]
    files: dict[str, bytes]
    verbatim: dict[str, bytes] = field(default_factory=dict)

    def shot(self, number: int) -> dict[str, Any]:
        return self.document["shots"][number - 1]

    def take(self, shot: int, number: int = 1) -> dict[str, Any]:
        return self.shot(shot)["takes"][number - 1]

    def character(self, number: int = 1) -> dict[str, Any]:
        return self.document["characters"][number - 1]

    def add_media(self, data: bytes, extension: str) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        self.files[f"media/{sha256}.{extension}"] = data
        self.manifest["media"].append({"sha256": sha256, "extension": extension, "size": len(data)})
        return sha256

    def media(self, extension: str) -> bytes:
        return next(data for name, data in sorted(self.files.items()) if name.endswith("." + extension))


def rebuilt(source: Path, target: Path, change: Callable[[Parts], Any]) -> Path:
    with zipfile.ZipFile(source) as archive:
        parts = Parts(
            json.loads(archive.read("manifest.json")),
            json.loads(archive.read("project.json")),
            {name: archive.read(name) for name in archive.namelist() if name.startswith("media/")},
        )
    change(parts)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for name in ("manifest.json", "project.json"):
            data = parts.manifest if name == "manifest.json" else parts.document
            out.writestr(name, parts.verbatim.get(name) or json.dumps(data).encode())
        for name, data in parts.files.items():
            out.writestr(name, data)
    return target


# Changes to the good bundle.


def put(*keys: str | int, value: Any) -> Callable[[Parts], None]:
    """Set ``value`` at ``keys`` in project.json (a first key of ``manifest`` means manifest.json)."""

    def change(parts: Parts) -> None:
        target: Any = parts.manifest if keys[0] == "manifest" else parts.document
        path = keys[1:] if keys[0] == "manifest" else keys
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(parts) if callable(value) else value

    return change


def picture(data: bytes | Callable[[Parts], bytes], extension: str, *where: str | int) -> Callable[[Parts], None]:
    """Add ``data`` as a media file and point the field at ``where`` in project.json to it."""

    def change(parts: Parts) -> None:
        sha256 = parts.add_media(data(parts) if callable(data) else data, extension)
        put(*where, value=sha256)(parts)

    return change


def verbatim(name: str, text: Callable[[Parts], str]) -> Callable[[Parts], None]:
    def change(parts: Parts) -> None:
        parts.verbatim[name] = text(parts).encode()

    return change


def repeated_key(name: str, key: str) -> Callable[[Parts], None]:
    """The member written with ``key`` given twice at its top level, the first time harmless-looking."""

    def text(parts: Parts) -> str:
        data = parts.manifest if name == "manifest.json" else parts.document
        return "{" + json.dumps(key) + ": " + json.dumps(copy.deepcopy(data[key])) + ", " + json.dumps(data)[1:]

    return verbatim(name, text)


def encoded(extension: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, format=extension)
    return buffer.getvalue()


def twice(parts: Parts) -> None:
    parts.document["characters"].append({**copy.deepcopy(parts.character()), "name": "MARA"})


def another_take(shot: int, **fields: Any) -> Callable[[Parts], None]:
    """A copy of the shot's first take added to it, with ``fields`` changed."""

    def change(parts: Parts) -> None:
        parts.shot(shot)["takes"].append({**copy.deepcopy(parts.take(shot)), **fields})

    return change


def score(**fields: Any) -> Callable[[Parts], None]:
    good_score = {"embedder": "offline-colour-texture-v1", "metric": "look", "value": 0.5, "details": {}}
    return put("shots", 0, "takes", 0, "scores", value=[{**good_score, **fields}])


def settings(**fields: Any) -> Callable[[Parts], None]:
    def change(parts: Parts) -> None:
        parts.take(1)["params"]["settings"].update(fields)

    return change


def row(change: Callable[[Parts], Any], fragment: str, id: str) -> Any:
    return pytest.param(change, fragment, id=id)


VIDEO = ("shots", 0, "takes", 0, "video_sha256")
REFERENCE = ("characters", 0, "references", 0, "sha256")
KEYFRAME = ("shots", 1, "keyframe_sha256")
TAKE = ("shots", 0, "takes", 0)
PARAMS = (*TAKE, "params")
PICTURE = ("shots", 1, "pictures", 0)  # the approved one
OTHER_PICTURE = ("shots", 1, "pictures", 1)

HOSTILE_BUNDLES = [
    # Media: only what the studio makes itself, checked by content.
    row(picture(HTML, "png", *REFERENCE), "not an image Continuity can read", "html-as-reference-png"),
    row(picture(SVG, "svg", *REFERENCE), "only png, jpg, webp and mp4", "svg-reference"),
    row(picture(SVG, "png", *KEYFRAME), "not an image Continuity can read", "svg-as-keyframe-png"),
    row(picture(HTML, "html", *KEYFRAME), "only png, jpg, webp and mp4", "html-keyframe"),
    row(picture(HTML, "mp4", *VIDEO), "not an MP4 video", "html-as-video-mp4"),
    row(picture(lambda p: b"\0\0\0\x08free" + p.media("mp4")[8:], "mp4", *VIDEO), "'ftyp'", "mp4-without-ftyp"),
    row(picture(lambda p: p.media("mp4") + b"\0", "png", *REFERENCE), "not an image", "video-named-png"),
    row(picture(encoded("png"), "jpg", *REFERENCE), "named .jpg", "png-named-jpg"),
    row(picture(encoded("gif"), "png", *REFERENCE), "GIF image", "gif-named-png"),
    row(picture(encoded("png")[:60], "png", *REFERENCE), "truncated or damaged", "truncated-png"),
    row(put(*REFERENCE, value=lambda p: p.take(1)["video_sha256"]), "both as a picture", "video-as-reference"),
    row(put(*VIDEO, value=lambda p: p.character()["references"][0]["sha256"]), "both as a", "picture-as-video"),
    row(picture(lambda p: p.media("mp4") + b"\0", "mp4", *KEYFRAME), "uses it as a picture", "mp4-as-keyframe"),
    row(lambda p: p.add_media(b"MZ\x90\x00", "exe"), "only png, jpg, webp and mp4", "unused-exe-member"),
    row(put("characters", 0, "references", 0, "width", value=0), "whole number from 1", "reference-width-0"),
    row(put(*KEYFRAME, value="ab" * 32), "does not hold", "media-neither-in-bundle-nor-store"),
    row(put(*KEYFRAME, value="../../etc/passwd"), "not a media name", "media-name-path"),
    # Names and texts: the checks of a storyboard and the command line.
    row(put("project", "name", value=ESCAPE), "control characters", "project-name-terminal-escape"),
    row(put("characters", 0, "name", value=ESCAPE), "control characters", "character-name-terminal-escape"),
    row(put("characters", 0, "name", value="Mara/../../x"), "must not contain '/'", "character-name-path"),
    row(put("characters", 0, "name", value=7), "must be text", "character-name-number"),
    row(twice, "already used by character 1", "character-twice-other-case"),
    row(put("characters", 0, "description", value="d" * 2001), f"limit is {MAX_DESCRIPTION_LENGTH}", "description"),
    row(put("characters", 0, "references", 0, "original_name", value="a\x00b"), "NUL", "reference-name-nul"),
    row(put("shots", 0, "prompt", value=" "), "must not be empty", "prompt-blank"),
    row(put("shots", 0, "prompt", value="p" * 4001), f"limit is {MAX_PROMPT_LENGTH}", "prompt-too-long"),
    row(put("shots", 0, "title", value="t" * 201), "limit is 200", "title-too-long"),
    row(put("shots", 0, "scene", value={"act": 1}), "must be text", "scene-object"),
    row(put(*TAKE, "backend", value=ESCAPE), "backend", "backend-terminal-escape"),
    row(put(*TAKE, "prompt", value=""), "must not be empty", "take-prompt-empty"),
    # Numbers, cameras and flags.
    row(put("shots", 1, "position", value=3), "numbered 1 to 2", "shot-numbers-with-a-gap"),
    row(put("shots", 1, "position", value=1), "numbered 1 to 2", "shot-numbers-repeated"),
    row(put("shots", 1, "position", value="2"), "numbered 1 to 2", "shot-number-text"),
    row(put("shots", 0, "camera", value="fly-32"), "'fly-32'", "camera-crashes-render"),
    row(put("shots", 0, "camera", value=12), "camera must be text", "camera-number"),
    row(put("shots", 0, "duration", value=-1), "more than 0 seconds", "duration-negative"),
    row(put("shots", 0, "duration", value="ten"), "'ten'", "duration-text"),
    row(put("shots", 0, "duration", value=601), "10 minutes", "duration-601"),
    # The cut kept with a shot: seconds in range, an out point after the in point, a card of bounded text.
    row(put("shots", 0, "cut_in", value=-1), "in point: must be more than 0 seconds", "cut-in-negative"),
    row(put("shots", 0, "cut_in", value="NaN"), "in point: must be a number of seconds", "cut-in-text"),
    row(put("shots", 0, "cut_out", value=0), "out point: must be more than 0 seconds", "cut-out-zero"),
    row(
        put("shots", 0, value=lambda parts: {**parts.shot(1), "cut_in": 1.0, "cut_out": 0.5}),
        "0.5 s is not after the in point (1 s)",
        "cut-out-before-in",
    ),
    row(put("shots", 1, "cut_crossfade", value=61), "crossfade: is 61 s; the limit is 60 s", "cut-crossfade-61"),
    row(put("shots", 1, "cut_crossfade", value=True), "crossfade: must be a number of seconds", "cut-crossfade-bool"),
    row(put("shots", 1, "cut_title", value="x" * 501), "title card: is 501 characters", "cut-card-501"),
    row(put("shots", 1, "cut_title", value=["Night"]), "title card: must be text", "cut-card-list"),
    row(put("shots", 0, "continue_from_previous", value="maybe"), "true or false", "flag-maybe"),
    row(put("shots", 0, "stale", value=[1]), "true or false", "stale-list"),
    row(put("project", "width", value=100), "multiple of 8", "project-width-100"),
    row(put("project", "fps", value=0), "between 1 and 120", "project-fps-0"),
    row(put(*TAKE, "seed", value=-1), "whole number from 0", "seed-negative"),
    row(put(*TAKE, "seed", value="7"), "whole number from 0", "seed-text"),
    row(put(*TAKE, "seed", value=2**40), "whole number from 0", "seed-huge"),
    row(put(*TAKE, "width", value=65), "multiple of 8", "take-width-65"),
    row(put(*TAKE, "fps", value="fast"), "whole number", "take-fps-text"),
    row(put(*TAKE, "num_frames", value=0), "whole number from 1", "take-frames-0"),
    row(put(*TAKE, "take_number", value=2**70), "whole number from 1", "take-number-past-sqlite"),
    row(another_take(2), "take number 1 twice", "take-number-twice"),
    row(put(*TAKE, "status", value="running"), "done, failed or cancelled", "take-running"),
    row(another_take(1, take_number=3), "more than one approved take", "two-approved-takes"),
    row(put(*TAKE, "status", value="failed"), "only a done take", "approved-failed-take"),
    row(put(*VIDEO, value=None), "has no video", "done-take-without-video"),
    row(put(*TAKE, "source_take", value="shot 1"), "must be an object", "source-take-text"),
    # What rendering again reads from a take's parameters.
    row(put(*PARAMS, value=["settings"]), "params: must be an object", "params-list"),
    row(put(*PARAMS, "settings", value="fast"), "settings: must be an object", "settings-text"),
    row(settings(steps="20"), "steps: must be a whole number", "steps-text"),
    row(settings(guidance="high"), "guidance: must be a number", "guidance-text"),
    row(settings(refiner="yes"), "refiner: must be true or false", "refiner-text"),
    row(settings(refiner_strength=None), "refiner_strength: must be a number", "refiner-strength-null"),
    row(settings(backend=3), "backend", "settings-backend-number"),
    row(settings(negative_prompt=["ugly"]), "must be text", "negative-prompt-list"),
    row(put(*PARAMS, "camera", value="fly-32"), "'fly-32'", "params-camera-crashes-render"),
    row(put(*PARAMS, "duration", value="long"), "'long'", "params-duration-text"),
    row(put(*PARAMS, "title", value={"t": 1}), "must be text", "params-title-object"),
    row(put(*PARAMS, "requested_frames", value="8"), "requested_frames", "requested-frames-text"),
    row(put(*PARAMS, "model_source", value=5), "model_source", "model-source-number"),
    row(put(*PARAMS, "pinned_inputs", value=[1]), "pinned_inputs: must be an object", "pinned-list"),
    row(put(*TAKE, "timings", value=[1]), "timings: must be an object", "timings-list"),
    # A take's pictures and scores.
    row(put(*TAKE, "inputs", 0, "role", value="poster"), "keyframe, last_frame or reference", "input-role"),
    row(put(*TAKE, "inputs", 0, "position", value=-1), "whole number from 0", "input-position"),
    row(put(*TAKE, "inputs", 0, "character", value="Nobody"), "unknown character 'Nobody'", "input-character"),
    row(score(value=2), "from 0 to 1", "score-above-1"),
    row(score(metric="beauty"), "identity, look, continuity or stability", "score-metric"),
    row(score(details=[1]), "details: must be an object", "score-details-list"),
    # A shot's drawn pictures (keyframe candidates): its keyframe comes from them.
    row(
        put(*OTHER_PICTURE, "approved", value=True), "more than one approved first frame", "two-approved-first-frames"
    ),
    row(put(*OTHER_PICTURE, "number", value=1), "first frame candidate 1 twice", "picture-number-twice"),
    row(
        put(*PICTURE, "number", value=0), "shot 2.picture 1.number: must be a whole number from 1", "picture-number-0"
    ),
    row(put(*PICTURE, "role", value="middle"), "shot 2.picture 1.role: must be first or last", "picture-role-middle"),
    row(put(*PICTURE, "status", value="queued"), "shot 2.picture 1.status: must be done", "picture-queued"),
    row(put(*PICTURE, "approved", value="yes"), "approved: must be true or false", "picture-approved-text"),
    row(
        put(*PICTURE, "params", value=["settings"]),
        "shot 2.picture 1.params: must be an object",
        "picture-params-list",
    ),
    row(put(*PICTURE, "params", "settings", "steps", value="20"), "steps: must be a whole number", "picture-steps"),
    row(put(*PICTURE, "width", value=65), "width: must be a multiple of 8", "picture-width-65"),
    row(put(*PICTURE, "height", value=0), "height: must be a multiple of 8", "picture-height-0"),
    row(put(*PICTURE, "backend", value=ESCAPE), "backend", "picture-backend-terminal-escape"),
    row(put(*PICTURE, "seed", value=-1), "whole number from 0", "picture-seed-negative"),
    row(put(*PICTURE, "prompt", value=""), "must not be empty", "picture-prompt-empty"),
    row(put(*PICTURE, "image_sha256", value=None), "image_sha256: is not a media name", "picture-without-image"),
    row(put(*PICTURE, "image_sha256", value=lambda p: p.take(1)["video_sha256"]), "both as a", "video-as-picture"),
    row(put(*VIDEO, value=lambda p: p.shot(2)["pictures"][0]["image_sha256"]), "both as a", "drawn-picture-as-video"),
    row(picture(SVG, "png", *PICTURE, "image_sha256"), "not an image Continuity can read", "svg-as-drawn-picture"),
    row(picture(lambda p: p.media("mp4") + b"\0", "mp4", *PICTURE, "image_sha256"), "as a picture", "mp4-drawn"),
    row(put(*PICTURE, "inputs", 0, "role", value="poster"), "subject or scene", "picture-input-role"),
    row(put(*PICTURE, "inputs", 0, "sha256", value="../../etc/passwd"), "not a media name", "picture-input-path"),
    row(put(*PICTURE, "inputs", 0, "sha256", value=lambda p: p.take(1)["video_sha256"]), "both as a", "video-input"),
    row(put(*PICTURE, "inputs", 0, "character", value="Nobody"), "unknown character 'Nobody'", "picture-input-who"),
    row(put(*PICTURE, "scores", value=[0.9]), "scores: must be an object", "picture-scores-list"),
    row(put(*PICTURE, "scores", "identity", value="high"), "identity: must be a number", "picture-identity-text"),
    row(
        put(*PICTURE, "scores", "characters", value={ESCAPE: {"score": 0.9, "verdict": "same person"}}),
        "control characters",
        "picture-scored-name-terminal-escape",
    ),
    row(
        put(*PICTURE, "scores", "characters", value={"Mara": {"score": 0.9, "verdict": ESCAPE}}),
        "verdict: must not contain control characters",
        "picture-verdict-terminal-escape",
    ),
    row(put(*PICTURE, "provenance", value="drawn"), "provenance: must be an object", "picture-provenance-text"),
    row(put(*PICTURE, "created_at", value="yesterday"), "date and time", "picture-time-garbage"),
    row(put("shots", 1, "pictures", value={}), "pictures: must be a list", "pictures-object"),
    row(put("shots", 0, "last_frame_sha256", value=lambda p: p.take(1)["video_sha256"]), "both as a", "video-ending"),
    # The cast a shot names.
    row(put("shots", 0, "characters", value=["Nobody"]), "unknown character 'Nobody'", "shot-character"),
    row(put("shots", 0, "keyframe_character", value="Nobody"), "unknown character 'Nobody'", "keyframe-character"),
    row(put("shots", 1, "keyframe_character", value="Mara"), "not both", "keyframe-image-and-character"),
    # Structure.
    row(put("characters", value="Mara"), "characters: must be a list", "characters-text"),
    row(put("shots", 1, value="the lamp turns"), "must be an object", "shot-text"),
    row(put("shots", 0, "takes", value={}), "takes: must be a list", "takes-object"),
    row(
        put("characters", 0, "references", value=lambda p: p.character()["references"] * (MAX_REFERENCES + 1)),
        f"the limit is {MAX_REFERENCES}",
        "references-too-many",
    ),
    row(put("shots", 0, "created_at", value="yesterday"), "date and time", "time-garbage"),
    row(put("project", "created_at", value=5), "date and time", "time-number"),
    row(put("manifest", "origin", value=5), "origin", "origin-number"),
    row(put("manifest", "created_at", value="soon"), "date and time", "manifest-time"),
    # JSON that Python's parser takes silently.
    row(repeated_key("project.json", "characters"), "'characters' appears twice", "project-json-repeated-key"),
    row(repeated_key("manifest.json", "origin"), "'origin' appears twice", "manifest-json-repeated-key"),
    row(put("shots", 0, "duration", value=float("nan")), "NaN", "json-nan"),
    row(put(*PARAMS, "settings", "guidance", value=float("inf")), "Infinity", "json-infinity"),
    row(verbatim("project.json", lambda p: '{"project": {}, "x": ' + "[" * 100_000), "nested", "json-deep"),
    row(verbatim("project.json", lambda p: '{"project": {"fps": 1' + "0" * 5000 + "}}"), "valid JSON", "json-int"),
]


def state(studio: Studio) -> tuple[dict[str, int], set[str], list[str]]:
    """Every table's row count, the files in the media store, and what is left in its temporary folder."""
    with studio.read() as session:
        rows = {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }
    files = {path.name for path in studio.media.stored_paths()}
    return rows, files, sorted(path.name for path in studio.media.temp_dir.iterdir())


@pytest.fixture
def home(tmp_path: Path, good: Path) -> Iterator[Studio]:
    """A data directory holding the project the good bundle came from (a copy of it keeps its origin)."""
    opened = open_studio(tmp_path / "home")
    bundles.unpack_bundle(opened, good)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory, good: Path) -> Iterator[dict[str, Studio]]:
    """Where the hostile bundles go: an empty data directory to unpack into, and one holding the project to merge
    into. Shared by the table's rows, as each asserts that it changed nothing."""
    folder = tmp_path_factory.mktemp("targets")
    opened = {"unpack": open_studio(folder / "empty"), "merge": open_studio(folder / "home")}
    bundles.unpack_bundle(opened["merge"], good)
    yield opened
    for studio in opened.values():
        studio.close()


def test_the_good_bundle_unpacks_and_merges(studio: Studio, home: Studio, good: Path, tmp_path: Path) -> None:
    """The untouched bundle, taken apart and put together again, is accepted: the table's rows fail for their one
    change alone."""
    same = rebuilt(good, tmp_path / "same.zip", lambda parts: None)
    result = bundles.unpack_bundle(studio, same)
    assert (result.counts.shots, result.counts.takes, result.counts.references, result.counts.pictures) == (2, 4, 1, 2)
    keyframe = storyboard.shot_number(studio, result.project_id, 2).keyframe
    assert keyframe.source == "drawn"
    merged = bundles.merge_bundle(home, same)
    assert (merged.takes_added, merged.takes_already_there, merged.keyframes_added) == (0, 4, 0)
    assert storyboard.shot_number(home, "Film", 2).keyframe.sha256 == keyframe.sha256
    for opened in (studio, home):
        with opened.read() as session:
            assert media_rows.verify(session, opened.media) == []


@pytest.mark.parametrize("operation", ["unpack", "merge"])
@pytest.mark.parametrize(("change", "fragment"), HOSTILE_BUNDLES)
def test_a_hostile_bundle_is_refused_and_changes_nothing(
    targets: dict[str, Studio], good: Path, tmp_path: Path, change: Any, fragment: str, operation: str
) -> None:
    bad = rebuilt(good, tmp_path / "hostile.zip", change)
    target = targets[operation]
    before = state(target)
    with pytest.raises(InvalidInput) as caught:
        if operation == "unpack":
            bundles.unpack_bundle(target, bad)
        else:
            bundles.merge_bundle(target, bad, "Film")
    message = str(caught.value)
    assert fragment in message
    assert message.startswith("hostile.zip")
    assert "\x1b" not in message and "\x00" not in message  # shown in a terminal: no raw control characters
    assert state(target) == before


@pytest.mark.parametrize("name", [ESCAPE, "a/b", "..", "  "])
def test_unpack_as_a_hostile_name_is_refused(studio: Studio, good: Path, name: str) -> None:
    before = state(studio)
    with pytest.raises(InvalidInput, match="as:"):
        bundles.unpack_bundle(studio, good, as_name=name)
    assert state(studio) == before


def test_a_take_rendered_again_keeps_no_id_of_the_studio_it_came_from(
    studio: Studio, good: Path, tmp_path: Path
) -> None:
    """A take's pinned pictures name characters and takes by the ids of the data directory it was rendered in;
    here those ids are other rows, so they are left out (the pictures themselves are named by hash)."""

    def pinned(parts: Parts) -> None:
        sha256 = parts.take(1)["inputs"][0]["sha256"]
        item = {"role": "keyframe", "position": 0, "sha256": sha256, "character_id": 99}
        parts.take(1)["params"]["pinned_inputs"] = {"inputs": [item], "source_take_id": 98, "from_take_id": 97}

    result = bundles.unpack_bundle(studio, rebuilt(good, tmp_path / "again.zip", pinned))
    (take, *_) = takes.list_takes(studio, result.project_id, shot_number=1).items
    assert take.params["pinned_inputs"] == {
        "inputs": [
            {
                "role": "keyframe",
                "position": 0,
                "sha256": take.params["pinned_inputs"]["inputs"][0]["sha256"],
                "character_id": None,
            }
        ],
        "source_take_id": None,
        "from_take_id": None,
    }


def test_a_reference_image_is_as_large_as_its_picture_says(studio: Studio, good: Path, tmp_path: Path) -> None:
    """As with an upload, a reference image's size is measured, not taken from the row."""
    lying = rebuilt(good, tmp_path / "lying.zip", put("characters", 0, "references", 0, "width", value=999))
    result = bundles.unpack_bundle(studio, lying)
    (mara,) = cast.list_characters(studio, result.project_id)
    with Image.open(mara.references[0].path) as picture:
        assert (mara.references[0].width, mara.references[0].height) == picture.size


# Storyboard files: the same rules for JSON a user hands over.


def storyboard_text(photo_name: str) -> str:
    mara = {"name": "Mara", "references": [photo_name]}
    return json.dumps({"project": "Film", "characters": [mara], "shots": [{"prompt": "Mara climbs", "duration": 2}]})


HOSTILE_STORYBOARDS = [
    pytest.param(
        lambda good: good.replace('"shots"', '"shots": [], "shots"'), "'shots' appears twice", id="repeated-top-key"
    ),
    pytest.param(
        lambda good: good.replace('"duration": 2', '"duration": 2, "duration": 600'),
        "'duration' appears twice",
        id="repeated-shot-key",
    ),
    pytest.param(
        lambda good: good.replace('"name": "Mara"', '"name": "Mara", "name": "Jonas"'),
        "'name' appears twice",
        id="repeated-character-key",
    ),
    pytest.param(lambda good: good.replace('"duration": 2', '"duration": NaN'), "NaN", id="nan-duration"),
    pytest.param(lambda good: good.replace('"Film"', json.dumps(ESCAPE)), "control characters", id="escape-in-name"),
    pytest.param(lambda good: good.replace('"Mara",', json.dumps(ESCAPE) + ","), "control", id="escape-character"),
    pytest.param(lambda good: "[" * 100_000, "nested", id="deep-json"),
    pytest.param(lambda good: '{"shots": [{"prompt": "p", "duration": 1' + "0" * 5000 + "}]}", "valid JSON", id="big"),
]


@pytest.mark.parametrize(("change", "fragment"), HOSTILE_STORYBOARDS)
def test_a_hostile_storyboard_is_refused_and_changes_nothing(
    studio: Studio, photos: dict[str, Path], tmp_path: Path, change: Any, fragment: str
) -> None:
    (tmp_path / "mara.png").write_bytes(photos["astronaut"].read_bytes())
    path = tmp_path / "board.json"
    path.write_text(change(storyboard_text("mara.png")), encoding="utf-8")
    before = state(studio)
    with pytest.raises(InvalidInput) as caught:
        import_storyboard(studio, path)
    assert fragment in str(caught.value)
    assert "\x1b" not in str(caught.value)
    assert state(studio) == before


def test_the_good_storyboard_imports(studio: Studio, photos: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "mara.png").write_bytes(photos["astronaut"].read_bytes())
    path = tmp_path / "board.json"
    path.write_text(storyboard_text("mara.png"), encoding="utf-8")
    result = import_storyboard(studio, path)
    assert (result.shots_added, result.characters_added, result.references_added) == (1, 1, 1)
    with studio.read() as session:
        assert session.scalar(select(func.count()).select_from(MediaObject)) == 1
