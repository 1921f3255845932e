"""Project bundles: one zip that carries a project's rows and media to another data directory and back.

A bundle holds ``manifest.json`` (format version, schema revision, origin, counts, and every media file's
SHA-256, extension and size), ``project.json`` (the project's rows, media named by hash and characters by
name, so no database id leaves the studio) and ``media/<sha256>.<ext>``.

Reading a bundle never trusts it: member names must be plain (no ``..``, absolute paths, backslashes, drive
letters or symlinks), declared sizes and compression ratios are bounded and never relied on (a member is
read only up to its declared size), and every media file is re-hashed. All of that happens before the
database is touched; the rows and files are then written in one transaction, so a bad bundle leaves the
target data directory as it was.

``origin`` identifies the project a bundle came from (a hash of its creation time, which unpacking keeps),
so :func:`merge_bundle` can tell a bundle of the same project from one of another project with the same name.
Shots and characters are recognised across copies the same way, by their creation time, so a merge finds a shot
whose prompt or place changed, or a renamed character. A project unpacked from a bundle is dated by the bundle's
snapshot (``copied_at``): what was made before it and is missing on one side was deleted there since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from projects import queries
from projects.cast import MAX_REFERENCES
from projects.errors import Conflict, InvalidInput, StudioError
from projects.storyboard import shift_positions
from projects.studio import Studio
from projects.takes import refresh_project_stale
from projects.validation import name_key
from storage.migrate import head_revision, known_revisions, revision_order
from storage.models import (
    Character,
    MediaObject,
    Project,
    ReferenceImage,
    Shot,
    Take,
    TakeInput,
    TakeScore,
)

FORMAT_VERSION = 1
TAKE_CHOICES = ("approved", "all", "none")
MAX_TOTAL_BYTES = 8 << 30  # sum of the members' declared uncompressed sizes
MAX_RATIO = 1000  # uncompressed : compressed, per member
MAX_JSON_BYTES = 64 << 20
MAX_MEMBERS = 100_000
_CHUNK = 1 << 20
_MEDIA_NAME = re.compile(r"media/([0-9a-f]{64})\.([a-z0-9]{1,10})")
_FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class BundleCounts:
    characters: int
    references: int
    shots: int
    takes: int
    media: int


@dataclass(frozen=True)
class PackResult:
    path: Path
    project: str
    takes_mode: str
    counts: BundleCounts
    byte_size: int
    origin: str


@dataclass(frozen=True)
class UnpackResult:
    project: str
    project_id: int
    counts: BundleCounts
    new_media_files: int
    schema_revision: str


@dataclass(frozen=True)
class MergeResult:
    project: str
    project_id: int
    takes_added: int
    takes_already_there: int
    shots_unmatched: list[int]  # the bundle's shot numbers left out with their takes (``takes_only``)
    characters_added: int = 0
    references_added: int = 0
    shots_added: list[int] = field(default_factory=list)  # their numbers here, after the merge
    shots_differing: list[int] = field(default_factory=list)  # edited on either side: kept as they are here
    stayed_deleted: int = 0  # shots, takes, characters and references deleted here since the copy: left out


# Writing.


def project_origin(project: Project) -> str:
    created = project.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return hashlib.sha256(created.astimezone(UTC).isoformat().encode()).hexdigest()[:32]


def _when(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _chosen_takes(shot: Shot, mode: str) -> list[Take]:
    if mode == "none":
        return []
    if mode == "approved":
        return [take for take in shot.takes if take.approved]
    return [take for take in shot.takes if take.status in _FINISHED]


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
        "created_at": _when(take.created_at),
        "started_at": _when(take.started_at),
        "finished_at": _when(take.finished_at),
        "inputs": [
            {
                "role": item.role,
                "position": item.position,
                "sha256": item.sha256,
                "character": by_id[item.character_id].name if item.character_id in by_id else None,
            }
            for item in take.inputs
        ],
        "scores": [
            {
                "embedder": score.embedder,
                "metric": score.metric,
                "value": score.value,
                "details": score.details,
                "created_at": _when(score.created_at),
            }
            for score in take.scores
        ],
    }


def _source_number(take: Take) -> int | None:
    session = Session.object_session(take)
    source = session.get(Take, take.source_take_id) if session is not None else None
    return source.take_number if source is not None else None


def _project_document(project: Project, mode: str) -> tuple[dict[str, Any], set[str], BundleCounts]:
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
                    "created_at": _when(ref.created_at),
                }
            )
        references += len(refs)
        characters.append(
            {
                "name": character.name,
                "description": character.description,
                "created_at": _when(character.created_at),
                "references": refs,
            }
        )
    take_shot = {take.id: shot.position for shot in project.shots for take in shot.takes}
    shots = []
    take_count = 0
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
                "stale": shot.stale,
                "characters": [character.name for character in shot.characters],
                "created_at": _when(shot.created_at),
                "takes": rows,
            }
        )
    document = {
        "project": {
            "name": project.name,
            "width": project.width,
            "height": project.height,
            "fps": project.fps,
            "created_at": _when(project.created_at),
            "copied_at": _when(project.copied_at),
        },
        "characters": characters,
        "shots": shots,
    }
    counts = BundleCounts(len(characters), references, len(shots), take_count, len(media))
    return document, media, counts


def pack_project(
    studio: Studio, project: str | int, bundle_path: str | Path, *, takes: str = "approved"
) -> PackResult:
    """Write ``project`` (its rows and media) to the zip ``bundle_path``, replacing it only once complete."""
    if takes not in TAKE_CHOICES:
        raise InvalidInput(f"must be one of {', '.join(TAKE_CHOICES)}, got {takes!r}", "takes")
    target = Path(bundle_path).expanduser().resolve()
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; name the bundle file, for example {target / 'project.zip'}")
    if not target.parent.is_dir():
        raise InvalidInput(f"the folder {target.parent} does not exist", "bundle")
    snapshot = datetime.now(UTC)  # before the read: whatever the bundle lacks was made after this
    with studio.read() as session:
        row = queries.find_project(session, project)
        document, media, counts = _project_document(row, takes)
        origin = project_origin(row)
        name = row.name
        objects = {
            obj.sha256: obj for obj in session.scalars(select(MediaObject).where(MediaObject.sha256.in_(media)))
        }
        files = []
        for sha256 in sorted(media):
            obj = objects.get(sha256)
            if obj is None:
                raise StudioError(f"media {sha256} used by project {name!r} has no row; run `verify` first")
            files.append({"sha256": sha256, "extension": obj.extension, "size": obj.byte_size})
    manifest = {
        "format": FORMAT_VERSION,
        "schema_revision": head_revision(),
        "project": name,
        "origin": origin,
        "takes": takes,
        "created_at": _when(snapshot),
        "counts": {
            "characters": counts.characters,
            "references": counts.references,
            "shots": counts.shots,
            "takes": counts.takes,
            "media": counts.media,
        },
        "media": files,
    }
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                archive.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
                archive.writestr("project.json", json.dumps(document, indent=1, sort_keys=True))
                for item in files:
                    path = studio.media.path_for(item["sha256"], item["extension"])
                    if studio.media.check(item["sha256"], item["extension"]) is not None:
                        raise StudioError(f"media file {path} is missing or damaged; run `verify` first")
                    archive.write(
                        path, f"media/{item['sha256']}.{item['extension']}", compress_type=zipfile.ZIP_STORED
                    )
            raw.flush()
            os.fsync(raw.fileno())
        temp_path.replace(target)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return PackResult(target, name, takes, counts, target.stat().st_size, origin)


# Reading.


def _bad(path: Path, why: str) -> InvalidInput:
    return InvalidInput(f"{path.name} is not a usable project bundle: {why}")


def _check_member_name(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _bad(path, f"member {name!r} is a symbolic link")
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise _bad(path, f"member {name!r} has an unsafe path (absolute, drive letter or backslash)")
    if any(part in ("..", ".") for part in name.split("/")):
        raise _bad(path, f"member {name!r} has a path that escapes the bundle")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, out: BinaryIO) -> str:
    """Copy one member to ``out``, refusing more bytes than it declares; returns the SHA-256 of its bytes."""
    digest = hashlib.sha256()
    total = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                total += len(chunk)
                if total > info.file_size:
                    raise _bad(path, f"member {info.filename!r} holds more bytes than it declares")
                digest.update(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise _bad(path, f"member {info.filename!r} cannot be read ({exc}); the file may be truncated") from exc
    if total != info.file_size:
        raise _bad(path, f"member {info.filename!r} is shorter than it declares; the file may be truncated")
    return digest.hexdigest()


def _read_json(archive: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], name: str, path: Path) -> Any:
    info = infos.get(name)
    if info is None:
        raise _bad(path, f"it has no {name}")
    if info.file_size > MAX_JSON_BYTES:
        raise _bad(path, f"{name} is larger than {MAX_JSON_BYTES >> 20} MiB")
    buffer = _Buffer()
    _read_member(archive, info, path, buffer)
    try:
        return json.loads(bytes(buffer.data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"{name} is not valid JSON ({exc})") from exc


class _Buffer:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk


@dataclass(frozen=True)
class _MediaFile:
    sha256: str
    extension: str
    size: int
    path: Path


@dataclass(frozen=True)
class _Bundle:
    manifest: dict[str, Any]
    document: dict[str, Any]
    media: dict[str, _MediaFile]


@contextmanager
def _open_bundle(studio: Studio, bundle_path: str | Path) -> Iterator[_Bundle]:
    """Check a bundle and extract its media into a temporary folder (removed afterwards)."""
    path = Path(bundle_path).expanduser()
    if not path.is_file():
        raise InvalidInput(f"there is no bundle file {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise _bad(path, "it is not a zip file, or it is truncated or damaged") from exc
    except OSError as exc:
        raise _bad(path, f"it cannot be read ({exc.strerror or exc})") from exc
    with archive, tempfile.TemporaryDirectory(dir=studio.media.temp_dir, prefix="bundle-") as scratch:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _bad(path, f"it has more than {MAX_MEMBERS} members")
        by_name: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            _check_member_name(path, info)
            if info.filename in by_name:
                raise _bad(path, f"member {info.filename!r} appears twice")
            by_name[info.filename] = info
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise _bad(path, f"it would unpack to more than {MAX_TOTAL_BYTES >> 30} GiB (a zip bomb?)")
            if info.file_size > max(info.compress_size, 1) * MAX_RATIO:
                raise _bad(path, f"member {info.filename!r} is compressed more than {MAX_RATIO}:1 (a zip bomb?)")
        manifest = _read_json(archive, by_name, "manifest.json", path)
        _check_manifest(manifest, path)
        declared = {}
        for item in manifest["media"]:
            try:
                declared[f"media/{item['sha256']}.{item['extension']}"] = item
            except (TypeError, KeyError) as exc:
                raise _bad(path, "manifest.json lists a media file without sha256 and extension") from exc
        for name in by_name:
            if name.endswith("/") or name in ("manifest.json", "project.json"):
                continue
            if not _MEDIA_NAME.fullmatch(name):
                raise _bad(path, f"unexpected member {name!r}")
            if name not in declared:
                raise _bad(path, f"member {name!r} is not listed in manifest.json")
        document = _read_json(archive, by_name, "project.json", path)
        if not isinstance(document, dict) or not isinstance(document.get("project"), dict):
            raise _bad(path, "project.json has no project")
        upgrade_document(document, manifest["schema_revision"])
        media: dict[str, _MediaFile] = {}
        for name, item in declared.items():
            match = _MEDIA_NAME.fullmatch(name)
            if match is None:
                raise _bad(path, f"manifest.json lists a media file with an invalid name {name!r}")
            info = by_name.get(name)
            if info is None:
                raise _bad(path, f"{name} is listed in manifest.json but missing")
            if info.file_size != item.get("size"):
                raise _bad(path, f"{name} is {info.file_size} bytes but manifest.json says {item.get('size')}")
            sha256, extension = match.groups()
            target = Path(scratch) / f"{sha256}.{extension}"
            with target.open("wb") as out:
                actual = _read_member(archive, info, path, out)
            if actual != sha256:
                raise _bad(path, f"{name} is damaged: its bytes hash to {actual}, not to its name")
            media[sha256] = _MediaFile(sha256, extension, info.file_size, target)
        yield _Bundle(manifest, document, media)


def _rows(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [row for row in document.get(key) or [] if isinstance(row, dict)]


def _since_0003(document: dict[str, Any]) -> None:
    """Revision 0003 added the stale mark, take chaining and the pictures each take started from."""
    for shot in _rows(document, "shots"):
        shot.setdefault("stale", False)
        for take in _rows(shot, "takes"):
            take.setdefault("source_take", None)
            take.setdefault("inputs", [])


def _since_0004(document: dict[str, Any]) -> None:
    """Revision 0004 added consistency scores."""
    for shot in _rows(document, "shots"):
        for take in _rows(shot, "takes"):
            take.setdefault("scores", [])


def _since_0006(document: dict[str, Any]) -> None:
    """Revision 0006 dated copies; a bundle from before says nothing of one."""
    document["project"].setdefault("copied_at", None)


def _since_0007(document: dict[str, Any]) -> None:
    """Revision 0007 renamed the look descriptor's score, stored as identity before, to look (identity is now a
    face model's); identity made with a face model ("embedder+face model") stays identity."""
    for shot in _rows(document, "shots"):
        for take in _rows(shot, "takes"):
            for score in _rows(take, "scores"):
                if score.get("metric") == "identity" and "+" not in str(score.get("embedder", "")):
                    score["metric"] = "look"


# Each step brings the rows of a bundle written before that revision to what it added, in migration order.
_UPGRADES = (("0003", _since_0003), ("0004", _since_0004), ("0006", _since_0006), ("0007", _since_0007))


def upgrade_document(document: dict[str, Any], revision: str) -> list[str]:
    """Upgrade a bundle's rows written at schema ``revision`` to this version's; returns the steps applied."""
    order = revision_order()
    applied = []
    for target, step in _UPGRADES:
        if order.index(revision) < order.index(target):
            step(document)
            applied.append(target)
    return applied


def _check_manifest(manifest: Any, path: Path) -> None:
    if not isinstance(manifest, dict):
        raise _bad(path, "manifest.json is not an object")
    fmt = manifest.get("format")
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise _bad(path, f"bundle format {fmt!r} was written by a newer version of Continuity; upgrade to read it")
    revision = manifest.get("schema_revision")
    if not isinstance(revision, str) or not revision:
        raise _bad(path, "manifest.json names no schema revision")
    if revision not in known_revisions():
        raise InvalidInput(
            f"{path.name} was written by a newer version of Continuity (schema revision {revision}); "
            "upgrade Continuity to unpack it"
        )
    if not isinstance(manifest.get("media"), list):
        raise _bad(path, "manifest.json has no media list")


def _stamp(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _store_media(studio: Studio, session: Session, bundle: _Bundle, needed: set[str]) -> int:
    created = 0
    for sha256 in sorted(needed):
        item = bundle.media.get(sha256)
        if item is None:
            if session.get(MediaObject, sha256) is not None:
                continue
            raise InvalidInput(f"project.json uses media {sha256}, which the bundle does not hold")
        stored = studio.store_file(session, item.path, item.extension)
        if stored.sha256 != sha256:  # pragma: no cover - hashed when extracted
            raise InvalidInput(f"media {sha256} changed while it was being stored")
        created += stored.created
    return created


def _take_media(row: dict[str, Any]) -> set[str]:
    found = {row.get("video_sha256"), row.get("thumbnail_sha256")}
    found.update(item.get("sha256") for item in row.get("inputs", []))
    return {sha for sha in found if sha}


def _new_take(shot: Shot, row: dict[str, Any], number: int, characters: dict[str, Character]) -> Take:
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
        created_at=_stamp(row.get("created_at")) or datetime.now(UTC),
        started_at=_stamp(row.get("started_at")),
        finished_at=_stamp(row.get("finished_at")),
    )
    for item in row.get("inputs", []):
        character = characters.get(name_key(item["character"])) if item.get("character") else None
        take.inputs.append(
            TakeInput(
                role=item["role"],
                position=item.get("position", 0),
                sha256=item["sha256"],
                character_id=character.id if character is not None else None,
            )
        )
    for score in row.get("scores", []):
        take.scores.append(
            TakeScore(
                embedder=score["embedder"],
                metric=score["metric"],
                value=score["value"],
                details=score.get("details") or {},
                created_at=_stamp(score.get("created_at")) or datetime.now(UTC),
            )
        )
    return take


def _bundle_media_needed(document: dict[str, Any]) -> set[str]:
    needed: set[str] = set()
    for character in document.get("characters", []):
        needed.update(ref["sha256"] for ref in character.get("references", []))
    for shot in document.get("shots", []):
        if shot.get("keyframe_sha256"):
            needed.add(shot["keyframe_sha256"])
        for take in shot.get("takes", []):
            needed.update(_take_media(take))
    return needed


def _link_sources(session: Session, pending: list[tuple[Take, Any]], takes: dict[tuple[int, int], Take]) -> None:
    for take, source in pending:
        if isinstance(source, dict):
            found = takes.get((source.get("shot"), source.get("take_number")))
            if found is not None:
                take.source_take_id = found.id
    session.flush()


def _restore(studio: Studio, session: Session, bundle: _Bundle, name: str) -> tuple[Project, BundleCounts, int]:
    doc = bundle.document
    info = doc["project"]
    new_media = _store_media(studio, session, bundle, _bundle_media_needed(doc))
    project = Project(
        name=name,
        name_key=name_key(name),
        width=info.get("width", 640),
        height=info.get("height", 384),
        fps=info.get("fps", 16),
        created_at=_stamp(info.get("created_at")) or datetime.now(UTC),
        copied_at=_stamp(bundle.manifest.get("created_at")) or datetime.now(UTC),
    )
    session.add(project)
    session.flush()
    characters: dict[str, Character] = {}
    references = 0
    for row in doc.get("characters", []):
        character = _new_character(project, row)
        for ref in row.get("references", []):
            character.references.append(
                ReferenceImage(
                    sha256=ref["sha256"],
                    position=ref["position"],
                    original_name=ref.get("original_name", ""),
                    width=ref["width"],
                    height=ref["height"],
                    created_at=_stamp(ref.get("created_at")) or datetime.now(UTC),
                )
            )
            references += 1
        session.add(character)
        characters[character.name_key] = character
    session.flush()
    pending: list[tuple[Take, Any]] = []
    by_key: dict[tuple[int, int], Take] = {}
    shot_count = take_count = 0
    for row in doc.get("shots", []):
        shot = _new_shot(project, row, row["position"], characters)
        session.add(shot)
        session.flush()
        shot_count += 1
        for take_row in row.get("takes", []):
            if take_row.get("status", "done") not in _FINISHED:
                continue
            take = _new_take(shot, take_row, take_row["take_number"], characters)
            session.add(take)
            session.flush()
            pending.append((take, take_row.get("source_take")))
            by_key[(shot.position, take.take_number)] = take
            take_count += 1
    _link_sources(session, pending, by_key)
    counts = BundleCounts(len(characters), references, shot_count, take_count, len(bundle.media))
    return project, counts, new_media


@contextmanager
def _rows_checked(path: Path) -> Iterator[None]:
    """Rows the database refuses, or fields missing from project.json, are the bundle's fault."""
    try:
        yield
    except StudioError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(path, f"project.json is missing or has a wrong field ({exc!r})") from exc
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise _bad(path, f"project.json holds rows the studio cannot accept ({reason})") from exc


def unpack_bundle(studio: Studio, bundle_path: str | Path, *, as_name: str | None = None) -> UnpackResult:
    """Restore a bundle as a new project (named as in the bundle, or ``as_name``), in one transaction."""
    path = Path(bundle_path).expanduser()
    with _open_bundle(studio, path) as bundle:
        name = str(as_name if as_name is not None else bundle.document["project"].get("name", "")).strip()
        if not name:
            raise InvalidInput("the project needs a name; use --as NAME", "as")
        with studio.write() as session:
            existing = session.scalar(select(Project).where(Project.name_key == name_key(name)))
            if existing is not None:
                raise Conflict(
                    f"a project named {existing.name!r} already exists in {studio.data_dir}; unpack under another "
                    "name with --as NAME, or merge the bundle into that project"
                )
            with _rows_checked(path):
                project, counts, new_media = _restore(studio, session, bundle, name)
                session.flush()
            return UnpackResult(project.name, project.id, counts, new_media, bundle.manifest["schema_revision"])


def merge_bundle(
    studio: Studio, bundle_path: str | Path, project: str | int | None = None, *, takes_only: bool = False
) -> MergeResult:
    """Bring back what a bundle of ``project`` has that the project here lacks, in one transaction.

    Shots are the same shot when they were created together (the bundle keeps each shot's creation time; the
    prompt and position settle a tie). Takes not here yet (by video, seed and backend) are added to their shot;
    a merged take keeps its approval only when the shot has none here. Shots added there are inserted after the
    shot they follow there, and characters added there (and reference images added to a character) come too,
    unless ``takes_only``: then those shots are left out and listed. A shot that differs between the two sides
    (edited on either) keeps this side's version and is listed. What both sides held when the copy was unpacked
    and this side deleted since (shots, takes, characters, references) stays deleted; between projects neither of
    which is a copy (or a bundle from before copies were dated), nothing can be told deleted, and it comes back.
    """
    path = Path(bundle_path).expanduser()
    with _open_bundle(studio, path) as bundle:
        target = project if project is not None else bundle.document["project"].get("name", "")
        with studio.write() as session:
            row = queries.find_project(session, target)
            if bundle.manifest.get("origin") and bundle.manifest["origin"] != project_origin(row):
                raise Conflict(
                    f"{path.name} did not come from project {row.name!r} (or a copy unpacked from it); "
                    "unpack it as a new project with --as NAME instead"
                )
            with _rows_checked(path):
                result = _merge(studio, session, bundle, row, takes_only=takes_only)
                session.flush()
            return result


# What of a shot, when it differs between the two sides, means it was edited.
_SHOT_FIELDS = ("scene", "title", "prompt", "duration", "camera", "keyframe_sha256", "continue_from_previous")


def _same_shot(home: Shot, row: dict[str, Any]) -> bool:
    mine = _shot_fields(home)
    theirs = {key: row.get(key) for key in _SHOT_FIELDS}
    theirs["keyframe_character"] = row.get("keyframe_character")
    theirs["characters"] = sorted(name_key(n) for n in row.get("characters", []))
    return mine == theirs


def _shot_fields(shot: Shot) -> dict[str, Any]:
    fields = {key: getattr(shot, key) for key in _SHOT_FIELDS}
    fields["keyframe_character"] = shot.keyframe_character.name if shot.keyframe_character else None
    fields["characters"] = sorted(character.name_key for character in shot.characters)
    return fields


def _match_shots(home: list[Shot], rows: list[dict[str, Any]]) -> list[Shot | None]:
    """For each of the bundle's shots, the same shot here, or None for a shot added there."""
    by_created: dict[str | None, list[Shot]] = {}
    for shot in home:
        by_created.setdefault(_when(shot.created_at), []).append(shot)
    taken: set[int] = set()
    found: list[Shot | None] = []
    for row in rows:
        created = row.get("created_at")
        if created:
            candidates = [s for s in by_created.get(str(created), []) if s.id not in taken]
        else:  # a bundle that does not say when its shots were made: by position and prompt
            candidates = [s for s in home if s.id not in taken and s.position == row.get("position")]
            candidates = [s for s in candidates if s.prompt == row.get("prompt")]
        candidates.sort(key=lambda s: (s.prompt != row.get("prompt"), s.position != row.get("position"), s.position))
        match = candidates[0] if candidates else None
        if match is not None:
            taken.add(match.id)
        found.append(match)
    return found


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _merge(studio: Studio, session: Session, bundle: _Bundle, project: Project, *, takes_only: bool) -> MergeResult:
    document = bundle.document
    # When the sides parted: a copy is dated by the snapshot it was unpacked from. Whatever either side held then,
    # and this side lacks now, this side deleted since. Every shot, character and reference goes into a bundle; a
    # take may not have (``takes``), so a take is judged only against the bundle's side's own copy time: all it
    # held from before then came from the original, which is here.
    there = _aware(_stamp(document["project"].get("copied_at")))
    parted = max((t for t in (there, _aware(project.copied_at)) if t is not None), default=None)

    def deleted_here(row: dict[str, Any], before: datetime | None = parted) -> bool:
        """In the bundle, not here, and made before the sides parted: this side deleted it since."""
        made = _aware(_stamp(row.get("created_at")))
        return before is not None and made is not None and made <= before

    stayed_deleted = 0
    # The bundle's characters by their name there, as characters here: the same character by creation time (so
    # a rename on either side is no new character), else by name.
    by_created = {_when(character.created_at): character for character in project.characters}
    by_name = {character.name_key: character for character in project.characters}
    characters: dict[str, Character] = {}
    shot_rows = _rows(document, "shots")
    matches = _match_shots(sorted(project.shots, key=lambda shot: shot.position), shot_rows)

    # Plan first, so every file the new rows need is stored before a row refers to it.
    needed: set[str] = set()
    new_characters: list[dict[str, Any]] = []
    new_references: list[tuple[str, dict[str, Any]]] = []
    for row in _rows(document, "characters"):
        key = name_key(row["name"])
        home = by_created.get(row.get("created_at")) or by_name.get(key)
        if home is not None:
            characters[key] = home
        if takes_only:
            continue
        if home is None and deleted_here(row):
            stayed_deleted += 1
            continue
        if home is None:
            new_characters.append(row)
        have = {ref.sha256 for ref in home.references} if home is not None else set()
        for ref in row.get("references", []):
            if ref["sha256"] in have:
                continue
            if deleted_here(ref):
                stayed_deleted += 1
                continue
            new_references.append((key, ref))
            needed.add(ref["sha256"])
            have.add(ref["sha256"])
        if len(have) > MAX_REFERENCES:
            raise InvalidInput(
                f"merging would give {row['name']} {len(have)} reference images; the limit is {MAX_REFERENCES}"
            )
    unmatched: list[int] = []
    differing: list[Shot] = []
    plan: list[tuple[int, dict[str, Any]]] = []  # (index of the shot row, take row)
    already = 0
    existing_takes: dict[tuple[int, int], Take] = {}  # (bundle shot number, bundle take number) -> take here
    left_out: set[int] = set()  # shot rows deleted here: neither they nor their takes come back
    for index, (row, home) in enumerate(zip(shot_rows, matches, strict=True)):
        if home is None:
            if deleted_here(row):
                stayed_deleted += 1
                left_out.add(index)
                continue
            if takes_only:
                if row.get("takes"):
                    unmatched.append(row.get("position"))
                continue
            if row.get("keyframe_sha256"):
                needed.add(row["keyframe_sha256"])
        elif not _same_shot(home, row):
            differing.append(home)
        here = {(take.video_sha256, take.seed, take.backend): take for take in home.takes} if home else {}
        for take_row in _rows(row, "takes"):
            if take_row.get("status", "done") not in _FINISHED:
                continue
            key = (take_row.get("video_sha256"), take_row["seed"], take_row["backend"])
            if key in here:
                already += 1
                existing_takes[(row.get("position"), take_row["take_number"])] = here[key]
            elif deleted_here(take_row, there):
                stayed_deleted += 1
            else:
                plan.append((index, take_row))
                needed.update(_take_media(take_row))
    _store_media(studio, session, bundle, needed)

    for row in new_characters:
        character = _new_character(project, row)
        session.add(character)
        characters[name_key(row["name"])] = character
    session.flush()
    for key, ref in new_references:
        character = characters[key]
        character.references.append(
            ReferenceImage(
                sha256=ref["sha256"],
                position=max((r.position for r in character.references), default=-1) + 1,
                original_name=ref.get("original_name", ""),
                width=ref["width"],
                height=ref["height"],
                created_at=_stamp(ref.get("created_at")) or datetime.now(UTC),
            )
        )
        session.flush()

    # Shots added there go in after the shot they follow there (or first).
    shots: list[Shot | None] = list(matches)
    added: list[Shot] = []
    previous: Shot | None = None
    for index, row in enumerate(shot_rows):
        if shots[index] is None and not takes_only and index not in left_out:
            position = previous.position + 1 if previous is not None else 1
            count = queries.shot_count(session, project.id)
            shift_positions(session, project.id, position, count, +1)
            shot = _new_shot(project, row, position, characters)
            session.add(shot)
            session.flush()
            shots[index] = shot
            added.append(shot)
        if shots[index] is not None:
            previous = shots[index]

    made: dict[tuple[int, int], Take] = dict(existing_takes)
    pending: list[tuple[Take, Any]] = []
    for index, take_row in plan:
        shot = shots[index]
        if shot is None:
            continue
        number = max((take.take_number for take in shot.takes), default=0) + 1
        take = _new_take(shot, take_row, number, characters)
        if take.approved and any(other.approved for other in shot.takes if other is not take):
            take.approved = False
        session.add(take)
        session.flush()
        made[(shot_rows[index].get("position"), take_row["take_number"])] = take
        pending.append((take, take_row.get("source_take")))
    _link_sources(session, pending, made)
    refresh_project_stale(session, project.id)
    return MergeResult(
        project.name,
        project.id,
        len(pending),
        already,
        unmatched,
        characters_added=len(new_characters),
        references_added=len(new_references),
        shots_added=sorted(shot.position for shot in added),
        shots_differing=sorted(shot.position for shot in differing),
        stayed_deleted=stayed_deleted,
    )


def _new_character(project: Project, row: dict[str, Any]) -> Character:
    return Character(
        project_id=project.id,
        name=row["name"],
        name_key=name_key(row["name"]),
        description=row.get("description", ""),
        created_at=_stamp(row.get("created_at")) or datetime.now(UTC),
    )


def _new_shot(project: Project, row: dict[str, Any], position: int, characters: dict[str, Character]) -> Shot:
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
        stale=bool(row.get("stale", False)),
        created_at=_stamp(row.get("created_at")) or datetime.now(UTC),
    )
    shot.characters = [characters[name_key(n)] for n in row.get("characters", []) if name_key(n) in characters]
    return shot
