"""The bundle's document format: what ``manifest.json`` and ``project.json`` hold, and how old bundles are upgraded.

A bundle is one zip: ``manifest.json`` (format version, schema revision, origin, the takes chosen, counts, and
every media file's SHA-256, extension and size), ``project.json`` (the project's rows, media named by hash and
characters by name, so no database id leaves the studio) and ``media/<sha256>.<ext>``.

Each shot carries its takes (those ``takes`` chooses) and its drawn pictures (``pictures``: keyframe candidates,
:class:`storage.models.PictureTake`). The approved first- and last-frame pictures always travel, whatever
``takes`` says: they are the shot's keyframe and last frame (:mod:`projects.shot_pictures`), part of the storyboard,
and without them the shot would render from another picture; ``all`` adds every other drawn candidate.

This module turns a project's rows into ``project.json`` (:func:`project_document`) and ``project.json``'s rows
back into new rows (:func:`new_character`, :func:`new_shot`, :func:`new_take`, :func:`new_picture`,
:func:`link_sources`). Rows are read by field name with defaults, so a bundle missing fields added since still
loads (a bundle written at revision 0008 before pictures travelled has no ``pictures``: it reads as none).

A bundle written at an older schema revision is brought to this version's rows by :func:`upgrade_document`: one
``_since_NNNN`` step for each revision that changed what a bundle holds, applied in migration order.

The module is longer than 500 lines because writing, upgrading and reading the rows of every table are kept side
by side: a field added to one of the three without the others is seen here.

``origin`` identifies the project a bundle came from (a hash of its creation time, which unpacking keeps), so a
merge can tell a bundle of the same project from one of another project with the same name. Times are written as
ISO 8601 in UTC (:func:`timestamp`) and read back as aware datetimes (:func:`parse_timestamp`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from projects.validation import name_key
from storage.migrate import revision_order
from storage.models import (
    Character,
    PictureInput,
    PictureTake,
    Project,
    ReferenceImage,
    Shot,
    Take,
    TakeInput,
    TakeScore,
)

FORMAT_VERSION = 1
TAKE_CHOICES = ("approved", "all", "none")  # which takes a bundle carries
FINISHED = ("done", "failed", "cancelled")  # the statuses a take in a bundle may have


@dataclass(frozen=True)
class BundleCounts:
    characters: int
    references: int
    shots: int
    takes: int
    media: int
    pictures: int = 0  # drawn keyframe candidates (the approved ones, or all with ``takes`` all)


# Writing: rows to a document.


def project_origin(project: Project) -> str:
    """Which project a bundle came from: a hash of the project's creation time, which copies keep."""
    created = project.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return hashlib.sha256(created.astimezone(UTC).isoformat().encode()).hexdigest()[:32]


def timestamp(value: datetime | None) -> str | None:
    """A time as a bundle writes it: ISO 8601 in UTC (a naive time is taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def parse_timestamp(value: Any) -> datetime | None:
    """A time a bundle wrote, as an aware datetime; None for none."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _chosen_takes(shot: Shot, mode: str) -> list[Take]:
    if mode == "none":
        return []
    if mode == "approved":
        return [take for take in shot.takes if take.approved]
    return [take for take in shot.takes if take.status in FINISHED]


def _input_rows(items: list[TakeInput] | list[PictureInput], by_id: dict[int, Character]) -> list[dict[str, Any]]:
    """The pictures a take or a drawn picture started from, by hash, with their character by name."""
    return [
        {
            "role": item.role,
            "position": item.position,
            "sha256": item.sha256,
            "character": by_id[item.character_id].name if item.character_id in by_id else None,
        }
        for item in items
    ]


def _chosen_pictures(shot: Shot, mode: str) -> list[PictureTake]:
    """The shot's drawn pictures a bundle carries: the approved ones always (its keyframe and last frame), every
    drawn one with ``all``. Pictures still queued, or failed, stay behind: nothing would show them."""
    drawn = [picture for picture in shot.pictures if picture.status == "done" and picture.image_sha256]
    return drawn if mode == "all" else [picture for picture in drawn if picture.approved]


def _picture_row(picture: PictureTake, by_id: dict[int, Character]) -> dict[str, Any]:
    return {
        "role": picture.role,
        "number": picture.number,
        "status": picture.status,
        "approved": picture.approved,
        "backend": picture.backend,
        "seed": picture.seed,
        "prompt": picture.prompt,
        "width": picture.width,
        "height": picture.height,
        "params": picture.params,
        "image_sha256": picture.image_sha256,
        "timings": picture.timings,
        "provenance": picture.provenance,
        "scores": picture.scores,
        "created_at": timestamp(picture.created_at),
        "started_at": timestamp(picture.started_at),
        "finished_at": timestamp(picture.finished_at),
        "inputs": _input_rows(picture.inputs, by_id),
    }


def _take_row(take: Take, shot_positions: dict[int, int], by_id: dict[int, Character]) -> dict[str, Any]:
    source = None
    if take.source_take_id is not None and take.source_take_id in shot_positions:
        source = {"shot": shot_positions[take.source_take_id], "take_number": _source_number(take)}
    return {
        "take_number": take.take_number,
        "status": take.status,
        "backend": take.backend,
        "seed": take.seed,
        "prompt": take.prompt,
        "width": take.width,
        "height": take.height,
        "fps": take.fps,
        "num_frames": take.num_frames,
        "params": take.params,
        "video_sha256": take.video_sha256,
        "thumbnail_sha256": take.thumbnail_sha256,
        "timings": take.timings,
        "provenance": take.provenance,
        "error": take.error,
        "approved": take.approved,
        "source_take": source,
        "created_at": timestamp(take.created_at),
        "started_at": timestamp(take.started_at),
        "finished_at": timestamp(take.finished_at),
        "inputs": _input_rows(take.inputs, by_id),
        "scores": [
            {
                "embedder": score.embedder,
                "metric": score.metric,
                "value": score.value,
                "details": score.details,
                "created_at": timestamp(score.created_at),
            }
            for score in take.scores
        ],
    }


def _source_number(take: Take) -> int | None:
    session = Session.object_session(take)
    source = session.get(Take, take.source_take_id) if session is not None else None
    return source.take_number if source is not None else None


def project_document(project: Project, mode: str) -> tuple[dict[str, Any], set[str], BundleCounts]:
    """``project.json`` for ``project`` with the takes ``mode`` chooses, the media it names, and its counts."""
    by_id = {character.id: character for character in project.characters}
    media: set[str] = set()
    characters = []
    references = 0
    for character in project.characters:
        refs = []
        for ref in character.references:
            media.add(ref.sha256)
            refs.append(
                {
                    "sha256": ref.sha256,
                    "position": ref.position,
                    "original_name": ref.original_name,
                    "width": ref.width,
                    "height": ref.height,
                    "created_at": timestamp(ref.created_at),
                }
            )
        references += len(refs)
        characters.append(
            {
                "name": character.name,
                "description": character.description,
                "created_at": timestamp(character.created_at),
                "references": refs,
            }
        )
    take_shot = {take.id: shot.position for shot in project.shots for take in shot.takes}
    shots = []
    take_count = picture_count = 0
    for shot in project.shots:
        if shot.keyframe_sha256:
            media.add(shot.keyframe_sha256)
        rows = []
        for take in _chosen_takes(shot, mode):
            row = _take_row(take, take_shot, by_id)
            media.update(s for s in (take.video_sha256, take.thumbnail_sha256) if s)
            media.update(item["sha256"] for item in row["inputs"])
            rows.append(row)
        take_count += len(rows)
        # A character's drawn views do not travel: a kept view is one of its reference images (above) already.
        pictures = [_picture_row(picture, by_id) for picture in _chosen_pictures(shot, mode)]
        for row in pictures:
            media.update(picture_media(row))
        picture_count += len(pictures)
        if shot.last_frame_sha256:
            media.add(shot.last_frame_sha256)
        shots.append(
            {
                "position": shot.position,
                "scene": shot.scene,
                "title": shot.title,
                "prompt": shot.prompt,
                "duration": shot.duration,
                "camera": shot.camera,
                "keyframe_sha256": shot.keyframe_sha256,
                "keyframe_character": shot.keyframe_character.name if shot.keyframe_character else None,
                "continue_from_previous": shot.continue_from_previous,
                "last_frame_sha256": shot.last_frame_sha256,
                "last_frame_from_next": shot.last_frame_from_next,
                "stale": shot.stale,
                "cut_in": shot.cut_in,
                "cut_out": shot.cut_out,
                "cut_crossfade": shot.cut_crossfade,
                "cut_title": shot.cut_title,
                "characters": [character.name for character in shot.characters],
                "created_at": timestamp(shot.created_at),
                "takes": rows,
                "pictures": pictures,
            }
        )
    document = {
        "project": {
            "name": project.name,
            "width": project.width,
            "height": project.height,
            "fps": project.fps,
            "created_at": timestamp(project.created_at),
            "copied_at": timestamp(project.copied_at),
        },
        "characters": characters,
        "shots": shots,
    }
    counts = BundleCounts(len(characters), references, len(shots), take_count, len(media), picture_count)
    return document, media, counts


# Upgrading a document written at an older schema revision.


def rows_of(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The rows under ``key`` that are objects (anything else in the list is skipped)."""
    return [row for row in document.get(key) or [] if isinstance(row, dict)]


def _since_0003(document: dict[str, Any]) -> None:
    """Revision 0003 added the stale mark, take chaining and the pictures each take started from."""
    for shot in rows_of(document, "shots"):
        shot.setdefault("stale", False)
        for take in rows_of(shot, "takes"):
            take.setdefault("source_take", None)
            take.setdefault("inputs", [])


def _since_0004(document: dict[str, Any]) -> None:
    """Revision 0004 added consistency scores."""
    for shot in rows_of(document, "shots"):
        for take in rows_of(shot, "takes"):
            take.setdefault("scores", [])


def _since_0006(document: dict[str, Any]) -> None:
    """Revision 0006 dated copies; a bundle from before says nothing of one."""
    document["project"].setdefault("copied_at", None)


def _since_0007(document: dict[str, Any]) -> None:
    """Revision 0007 renamed the look descriptor's score, stored as identity before, to look (identity is now a
    face model's); identity made with a face model ("embedder+face model") stays identity."""
    for shot in rows_of(document, "shots"):
        for take in rows_of(shot, "takes"):
            for score in rows_of(take, "scores"):
                if score.get("metric") == "identity" and "+" not in str(score.get("embedder", "")):
                    score["metric"] = "look"


def _since_0008(document: dict[str, Any]) -> None:
    """Revision 0008 added a shot's last frame and its drawn pictures (keyframe candidates)."""
    for shot in rows_of(document, "shots"):
        shot.setdefault("last_frame_sha256", None)
        shot.setdefault("last_frame_from_next", False)
        shot.setdefault("pictures", [])


def _since_0009(document: dict[str, Any]) -> None:
    """Revision 0009 kept the cut with each shot: nothing trimmed, the export's crossfade, no title card."""
    for shot in rows_of(document, "shots"):
        shot.setdefault("cut_in", 0.0)
        shot.setdefault("cut_out", None)
        shot.setdefault("cut_crossfade", None)
        shot.setdefault("cut_title", "")


# Each step brings the rows of a bundle written before that revision to what it added, in migration order.
_UPGRADES = (
    ("0003", _since_0003),
    ("0004", _since_0004),
    ("0006", _since_0006),
    ("0007", _since_0007),
    ("0008", _since_0008),
    ("0009", _since_0009),
)


def upgrade_document(document: dict[str, Any], revision: str) -> list[str]:
    """Upgrade a bundle's rows written at schema ``revision`` to this version's; returns the steps applied."""
    order = revision_order()
    applied = []
    for target, step in _UPGRADES:
        if order.index(revision) < order.index(target):
            step(document)
            applied.append(target)
    return applied


# Reading: a document's rows to new rows.


def take_media(row: dict[str, Any]) -> set[str]:
    """The media a take's row names: its video, thumbnail and the pictures it started from."""
    found = {row.get("video_sha256"), row.get("thumbnail_sha256")}
    found.update(item.get("sha256") for item in row.get("inputs", []))
    return {sha for sha in found if sha}


def picture_media(row: dict[str, Any]) -> set[str]:
    """The media a drawn picture's row names: the picture and the pictures it was drawn from."""
    found = {row.get("image_sha256")}
    found.update(item.get("sha256") for item in row.get("inputs", []))
    return {sha for sha in found if sha}


def media_needed(document: dict[str, Any]) -> set[str]:
    """Every media file the document's rows name."""
    needed: set[str] = set()
    for character in document.get("characters", []):
        needed.update(ref["sha256"] for ref in character.get("references", []))
    for shot in document.get("shots", []):
        needed.update(sha for sha in (shot.get("keyframe_sha256"), shot.get("last_frame_sha256")) if sha)
        for take in shot.get("takes", []):
            needed.update(take_media(take))
        for picture in shot.get("pictures") or []:
            needed.update(picture_media(picture))
    return needed


def new_character(project: Project, row: dict[str, Any]) -> Character:
    """A character of ``project`` from its row, without its reference images."""
    return Character(
        project_id=project.id,
        name=row["name"],
        name_key=name_key(row["name"]),
        description=row.get("description", ""),
        created_at=parse_timestamp(row.get("created_at")) or datetime.now(UTC),
    )


def new_reference(row: dict[str, Any], position: int) -> ReferenceImage:
    """A reference image from its row, at ``position`` among its character's."""
    return ReferenceImage(
        sha256=row["sha256"],
        position=position,
        original_name=row.get("original_name", ""),
        width=row["width"],
        height=row["height"],
        created_at=parse_timestamp(row.get("created_at")) or datetime.now(UTC),
    )


def new_shot(project: Project, row: dict[str, Any], position: int, characters: dict[str, Character]) -> Shot:
    """A shot of ``project`` at ``position`` from its row; ``characters`` by name key, as written here."""
    keyframe_character = characters.get(name_key(row["keyframe_character"])) if row.get("keyframe_character") else None
    shot = Shot(
        project_id=project.id,
        position=position,
        scene=row.get("scene", ""),
        title=row.get("title", ""),
        prompt=row["prompt"],
        duration=row["duration"],
        camera=row.get("camera", "static"),
        keyframe_sha256=row.get("keyframe_sha256"),
        keyframe_character_id=keyframe_character.id if keyframe_character else None,
        continue_from_previous=bool(row.get("continue_from_previous", False)),
        last_frame_sha256=row.get("last_frame_sha256"),
        last_frame_from_next=bool(row.get("last_frame_from_next", False)),
        stale=bool(row.get("stale", False)),
        cut_in=row.get("cut_in", 0.0),
        cut_out=row.get("cut_out"),
        cut_crossfade=row.get("cut_crossfade"),
        cut_title=row.get("cut_title", ""),
        created_at=parse_timestamp(row.get("created_at")) or datetime.now(UTC),
    )
    shot.characters = [characters[name_key(n)] for n in row.get("characters", []) if name_key(n) in characters]
    return shot


def new_take(shot: Shot, row: dict[str, Any], number: int, characters: dict[str, Character]) -> Take:
    """Take ``number`` of ``shot`` from its row, with its inputs and scores (its source is linked later)."""
    take = Take(
        shot=shot,
        take_number=number,
        status=row.get("status", "done"),
        backend=row["backend"],
        seed=row["seed"],
        prompt=row.get("prompt", shot.prompt),
        width=row["width"],
        height=row["height"],
        fps=row["fps"],
        num_frames=row["num_frames"],
        params=row.get("params") or {},
        video_sha256=row.get("video_sha256"),
        thumbnail_sha256=row.get("thumbnail_sha256"),
        timings=row.get("timings") or {},
        provenance=row.get("provenance") or {},
        error=row.get("error"),
        approved=bool(row.get("approved", False)),
        created_at=parse_timestamp(row.get("created_at")) or datetime.now(UTC),
        started_at=parse_timestamp(row.get("started_at")),
        finished_at=parse_timestamp(row.get("finished_at")),
    )
    take.inputs.extend(TakeInput(**_input_fields(item, characters)) for item in row.get("inputs", []))
    for score in row.get("scores", []):
        take.scores.append(
            TakeScore(
                embedder=score["embedder"],
                metric=score["metric"],
                value=score["value"],
                details=score.get("details") or {},
                created_at=parse_timestamp(score.get("created_at")) or datetime.now(UTC),
            )
        )
    return take


def new_picture(shot: Shot, row: dict[str, Any], number: int, characters: dict[str, Character]) -> PictureTake:
    """Drawn picture ``number`` of ``shot`` (for its row's role) from its row, with the pictures it was drawn from."""
    picture = PictureTake(
        shot=shot,
        role=row["role"],
        number=number,
        status="done",
        backend=row["backend"],
        seed=row["seed"],
        prompt=row.get("prompt", shot.prompt),
        width=row["width"],
        height=row["height"],
        params=row.get("params") or {},
        image_sha256=row["image_sha256"],
        timings=row.get("timings") or {},
        provenance=row.get("provenance") or {},
        scores=row.get("scores") or {},
        approved=bool(row.get("approved", False)),
        created_at=parse_timestamp(row.get("created_at")) or datetime.now(UTC),
        started_at=parse_timestamp(row.get("started_at")),
        finished_at=parse_timestamp(row.get("finished_at")),
    )
    picture.inputs.extend(PictureInput(**_input_fields(item, characters)) for item in row.get("inputs", []))
    return picture


def _input_fields(item: dict[str, Any], characters: dict[str, Character]) -> dict[str, Any]:
    """An input picture's row as a new row's fields; its character by name key, as written here."""
    character = characters.get(name_key(item["character"])) if item.get("character") else None
    return {
        "role": item["role"],
        "position": item.get("position", 0),
        "sha256": item["sha256"],
        "character_id": character.id if character is not None else None,
    }


def link_sources(session: Session, pending: list[tuple[Take, Any]], takes: dict[tuple[int, int], Take]) -> None:
    """Point each new take at the take it continued from, by (shot number, take number) in the bundle."""
    for take, source in pending:
        if isinstance(source, dict):
            found = takes.get((source.get("shot"), source.get("take_number")))
            if found is not None:
                take.source_take_id = found.id
    session.flush()
