"""Project bundles: one zip that carries a project's rows and media to another data directory and back.

The service the front ends call: :func:`pack_project` writes a bundle, :func:`unpack_bundle` restores one as a new
project, and :func:`merge_bundle` brings back into a project what a bundle of it holds that it lacks. The format
is :mod:`projects.bundle_format`; reading an untrusted bundle, :mod:`projects.bundle_reading`; matching a bundle's
rows against the project here, :mod:`projects.bundle_merge`. Each unpack or merge is one transaction, written only
after the whole bundle has been checked, so a bad bundle leaves the target data directory as it was. A merge takes
only a bundle of the project it merges into (by its ``origin``), unless forced.

A shot's approved drawn keyframe (and last frame) travels with it whatever takes are chosen, so an unpacked shot
starts from the same picture; ``takes="all"`` carries every drawn candidate too (:mod:`projects.bundle_format`).

Packing never writes over what it should not: a bundle path inside the data directory (its database, its media)
is refused, and so is an existing file unless ``overwrite``.

A project unpacked from a bundle keeps the original's creation time (so its ``origin`` stays that of the
original) and is dated by the bundle's snapshot (``copied_at``): what was made before it and is missing on one
side was deleted there since.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from projects import queries
from projects.bundle_format import (
    FINISHED,
    FORMAT_VERSION,
    TAKE_CHOICES,
    BundleCounts,
    link_sources,
    media_needed,
    new_character,
    new_picture,
    new_reference,
    new_shot,
    new_take,
    parse_timestamp,
    project_document,
    project_origin,
    timestamp,
)
from projects.bundle_merge import MergeResult, merge_rows
from projects.bundle_reading import Bundle, open_bundle, rows_checked, store_media
from projects.errors import Conflict, InvalidInput, StudioError
from projects.studio import Studio
from projects.validation import clean_name, name_key
from storage.db import DATABASE_FILE
from storage.migrate import head_revision
from storage.models import Character, MediaObject, Project, Take


@dataclass(frozen=True)
class PackResult:
    path: Path
    project: str
    takes_mode: str
    counts: BundleCounts
    byte_size: int
    origin: str

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.path),
            "project": self.project,
            "takes": self.takes_mode,
            "counts": asdict(self.counts),
            "bytes": self.byte_size,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class UnpackResult:
    project: str
    project_id: int
    counts: BundleCounts
    new_media_files: int
    schema_revision: str

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "project_id": self.project_id,
            "counts": asdict(self.counts),
            "new_media_files": self.new_media_files,
            "schema_revision": self.schema_revision,
        }


def _studio_owns(studio: Studio, target: Path) -> bool:
    """Whether ``target`` is the database, one of its journal files, or inside a folder the studio keeps itself."""
    home = studio.data_dir.resolve()
    if not target.is_relative_to(home):
        return False
    first = target.relative_to(home).parts[0]
    return first.startswith(DATABASE_FILE) or first in ("media", "workers")


def pack_project(
    studio: Studio, project: str | int, bundle_path: str | Path, *, takes: str = "approved", overwrite: bool = False
) -> PackResult:
    """Write ``project`` (its rows and media) to the zip ``bundle_path``, in place only once complete.

    A path among the studio's own files (its database, media store, worker locks) is refused, even with
    ``overwrite``; so is any other existing file, unless ``overwrite``.
    """
    if takes not in TAKE_CHOICES:
        raise InvalidInput(f"must be one of {', '.join(TAKE_CHOICES)}, got {takes!r}", "takes")
    target = Path(bundle_path).expanduser().resolve()
    if _studio_owns(studio, target):
        raise InvalidInput(
            f"{target} is one of the studio's own files in {studio.data_dir}; write the bundle somewhere else",
            "bundle",
        )
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; name the bundle file, for example {target / 'project.zip'}")
    if not target.parent.is_dir():
        raise InvalidInput(f"the folder {target.parent} does not exist", "bundle")
    if target.exists() and not overwrite:
        raise _exists(target)
    snapshot = datetime.now(UTC)  # before the read: whatever the bundle lacks was made after this
    with studio.read() as session:
        row = queries.find_project(session, project)
        document, media, counts = project_document(row, takes)
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
        "created_at": timestamp(snapshot),
        "counts": {
            "characters": counts.characters,
            "references": counts.references,
            "shots": counts.shots,
            "takes": counts.takes,
            "media": counts.media,
            "pictures": counts.pictures,
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
        _put_in_place(temp_path, target, overwrite)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return PackResult(target, name, takes, counts, target.stat().st_size, origin)


def _exists(target: Path) -> Conflict:
    return Conflict(f"{target} already exists; choose another name, or replace it with --overwrite (overwrite=True)")


def _put_in_place(temp_path: Path, target: Path, overwrite: bool) -> None:
    """Move the finished bundle to ``target``; without ``overwrite``, only if nothing appeared there meanwhile."""
    if overwrite:
        temp_path.replace(target)
        return
    try:
        os.link(temp_path, target)  # fails if target exists, atomically
    except FileExistsError:
        raise _exists(target) from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise _exists(target) from None
        temp_path.replace(target)
        return
    temp_path.unlink()


def unpack_bundle(studio: Studio, bundle_path: str | Path, *, as_name: str | None = None) -> UnpackResult:
    """Restore a bundle as a new project (named as in the bundle, or ``as_name``), in one transaction."""
    path = Path(bundle_path).expanduser()
    if as_name is not None:
        as_name = clean_name(as_name, "as")
    with open_bundle(studio, path) as bundle:
        name = as_name if as_name is not None else (bundle.document["project"].get("name") or "")
        if not name:
            raise InvalidInput("the project needs a name; use --as NAME", "as")
        with studio.write() as session:
            existing = session.scalar(select(Project).where(Project.name_key == name_key(name)))
            if existing is not None:
                raise Conflict(
                    f"a project named {existing.name!r} already exists in {studio.data_dir}; unpack under another "
                    "name with --as NAME, or merge the bundle into that project"
                )
            with rows_checked(path):
                project, counts, new_media = _restore(studio, session, bundle, name)
                session.flush()
            return UnpackResult(project.name, project.id, counts, new_media, bundle.manifest["schema_revision"])


def _restore(studio: Studio, session: Session, bundle: Bundle, name: str) -> tuple[Project, BundleCounts, int]:
    doc = bundle.document
    info = doc["project"]
    new_media = store_media(studio, session, bundle, media_needed(doc))
    project = Project(
        name=name,
        name_key=name_key(name),
        width=info.get("width", 640),
        height=info.get("height", 384),
        fps=info.get("fps", 16),
        created_at=parse_timestamp(info.get("created_at")) or datetime.now(UTC),
        copied_at=parse_timestamp(bundle.manifest.get("created_at")) or datetime.now(UTC),
    )
    session.add(project)
    session.flush()
    characters: dict[str, Character] = {}
    references = 0
    for row in doc.get("characters", []):
        character = new_character(project, row)
        for ref in row.get("references", []):
            character.references.append(new_reference(ref, ref["position"]))
            references += 1
        session.add(character)
        characters[character.name_key] = character
    session.flush()
    pending: list[tuple[Take, Any]] = []
    by_key: dict[tuple[int, int], Take] = {}
    shot_count = take_count = picture_count = 0
    for row in doc.get("shots", []):
        shot = new_shot(project, row, row["position"], characters)
        session.add(shot)
        session.flush()
        shot_count += 1
        for take_row in row.get("takes", []):
            if take_row.get("status", "done") not in FINISHED:
                continue
            take = new_take(shot, take_row, take_row["take_number"], characters)
            session.add(take)
            session.flush()
            pending.append((take, take_row.get("source_take")))
            by_key[(shot.position, take.take_number)] = take
            take_count += 1
        for picture_row in row.get("pictures") or []:  # numbered and approved as there: the same keyframe
            session.add(new_picture(shot, picture_row, picture_row["number"], characters))
            picture_count += 1
    link_sources(session, pending, by_key)
    counts = BundleCounts(len(characters), references, shot_count, take_count, len(bundle.media), picture_count)
    return project, counts, new_media


def merge_bundle(
    studio: Studio,
    bundle_path: str | Path,
    project: str | int | None = None,
    *,
    takes_only: bool = False,
    force: bool = False,
) -> MergeResult:
    """Bring back what a bundle of ``project`` has that the project here lacks, in one transaction.

    Shots are the same shot when they were created together (the bundle keeps each shot's creation time; the
    prompt and position settle a tie). Takes not here yet (by video, seed and backend) are added to their shot;
    a merged take keeps its approval only when the shot has none here. Drawn pictures (keyframe candidates) not here
    yet (by frame, picture and seed) are added after the shot's own (``keyframes_added``); the bundle's approved
    picture of a frame becomes the shot's here only when none is approved here, else the shot is listed
    (``keyframes_differing``) and keeps its own. Shots added there are inserted after the
    shot they follow there, and characters added there (and reference images added to a character) come too,
    unless ``takes_only``: then those shots are left out and listed. A shot that differs between the two sides
    (edited on either) keeps this side's version and is listed. What both sides held when the copy was unpacked
    and this side deleted since (shots, takes, characters, references) stays deleted; between projects neither of
    which is a copy (or a bundle from before copies were dated), nothing can be told deleted, and it comes back.

    The bundle must say it came from this project (its manifest's ``origin``, which copies keep); one that says
    nothing of where it came from, or names another project, is refused unless ``force``.
    """
    path = Path(bundle_path).expanduser()
    with open_bundle(studio, path) as bundle:
        target = project if project is not None else bundle.document["project"].get("name", "")
        with studio.write() as session:
            row = queries.find_project(session, target)
            origin = bundle.manifest.get("origin")
            if not force and not origin:
                raise Conflict(
                    f"{path.name} does not say which project it came from, so it cannot be told to be a bundle of "
                    f"{row.name!r}; unpack it as a new project with --as NAME, or merge it anyway with --force"
                )
            if not force and origin != project_origin(row):
                raise Conflict(
                    f"{path.name} did not come from project {row.name!r} (or a copy unpacked from it); "
                    "unpack it as a new project with --as NAME instead, or merge it anyway with --force"
                )
            with rows_checked(path):
                result = merge_rows(studio, session, bundle, row, takes_only=takes_only)
                session.flush()
            return result
