"""Reading a bundle safely: a zip from anywhere is checked whole before anything of it reaches the database.

Member names must be plain (no ``..``, absolute paths, backslashes, drive letters or symlinks), declared sizes and
compression ratios are bounded and never relied on (a member is read only up to its declared size), every member
must be one the manifest lists, and every media file is re-hashed as it is extracted into a staging folder
(:mod:`projects.staging`, so a process killed mid-unpack leaves nothing for good). JSON with a key given twice, or
NaN, is refused; every row and media file then goes through :mod:`projects.bundle_checks`, as strict as an upload.
:func:`open_bundle` yields the checked manifest, the upgraded and cleaned ``project.json`` and the extracted media;
a service then stores the media it needs with :func:`store_media` (through ``studio.store_file``, inside its
transaction) and writes rows under :func:`rows_checked`, so a bad bundle leaves the target data directory as it was.
"""

from __future__ import annotations

import hashlib
import re
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from projects.bundle_checks import (
    MediaUse,
    check_document,
    check_extension,
    check_manifest,
    check_media_file,
    kind_of,
    measured_references,
)
from projects.bundle_format import FORMAT_VERSION, upgrade_document
from projects.errors import InvalidInput, StudioError
from projects.staging import staging_folder
from projects.storyboard_file import json_failure, parse_json
from projects.studio import Studio
from storage.migrate import known_revisions
from storage.models import MediaObject

MAX_TOTAL_BYTES = 8 << 30  # sum of the members' declared uncompressed sizes
MAX_RATIO = 1000  # uncompressed : compressed, per member
MAX_JSON_BYTES = 64 << 20
MAX_MEMBERS = 100_000
_CHUNK = 1 << 20
_MEDIA_NAME = re.compile(r"media/([0-9a-f]{64})\.([a-z0-9]{1,10})")


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


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, out: BinaryIO) -> str:
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
    read_member(archive, info, path, buffer)
    try:
        text = bytes(buffer.data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(path, f"{name} is not UTF-8 text ({exc})") from None
    try:
        return parse_json(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(path, f"{name} {json_failure(exc)}") from None


class _Buffer:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk


@dataclass(frozen=True)
class MediaFile:
    """A media file of the bundle, hashed and extracted to ``path`` in the temporary folder."""

    sha256: str
    extension: str
    size: int
    path: Path


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its manifest, its ``project.json`` upgraded to this version and cleaned, its media by
    SHA-256, how the rows use each media file, and the bundle's path (for messages)."""

    manifest: dict[str, Any]
    document: dict[str, Any]
    media: dict[str, MediaFile]
    uses: dict[str, MediaUse]
    path: Path


@contextmanager
def open_bundle(studio: Studio, bundle_path: str | Path) -> Iterator[Bundle]:
    """Check a bundle and extract its media into a staging folder (removed afterwards)."""
    path = Path(bundle_path).expanduser()
    if not path.is_file():
        raise InvalidInput(f"there is no bundle file {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise _bad(path, "it is not a zip file, or it is truncated or damaged") from exc
    except OSError as exc:
        raise _bad(path, f"it cannot be read ({exc.strerror or exc})") from exc
    with archive, staging_folder(studio.media) as scratch:
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
                name = f"media/{item['sha256']}.{item['extension']}"
            except (TypeError, KeyError) as exc:
                raise _bad(path, "manifest.json lists a media file without sha256 and extension") from exc
            try:
                check_extension(name, str(item["extension"]))
            except InvalidInput as exc:
                raise _bad(path, str(exc)) from None
            declared[name] = item
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
        try:
            uses = check_document(document)
        except InvalidInput as exc:
            raise _bad(path, f"in project.json, {exc}") from None
        media: dict[str, MediaFile] = {}
        sizes: dict[str, tuple[int, int]] = {}
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
                actual = read_member(archive, info, path, out)
            if actual != sha256:
                raise _bad(path, f"{name} is damaged: its bytes hash to {actual}, not to its name")
            try:
                size = check_media_file(target, name, extension, uses.get(sha256))
            except InvalidInput as exc:
                raise _bad(path, str(exc)) from None
            if size is not None:
                sizes[sha256] = size
            media[sha256] = MediaFile(sha256, extension, info.file_size, target)
        measured_references(document, sizes)
        yield Bundle(manifest, document, media, uses, path)


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
    try:
        check_manifest(manifest)
    except InvalidInput as exc:
        raise _bad(path, f"in manifest.json, {exc}") from None


def store_media(studio: Studio, session: Session, bundle: Bundle, needed: set[str]) -> int:
    """Store the ``needed`` media of ``bundle`` in the open write transaction; returns how many files are new.

    A file the rows use and the bundle lacks is fine when the store already holds it, as what the rows use it as
    (a picture or a video); otherwise the bundle is refused, whether or not this unpack or merge needs the file.
    """
    for sha256, use in sorted(bundle.uses.items()):
        if sha256 in bundle.media:
            continue
        row = session.get(MediaObject, sha256)
        if row is None:
            raise _bad(bundle.path, f"{use.where} uses media {sha256}, which the bundle does not hold")
        if kind_of(row.extension) != use.kind:
            what = f"{use.where} uses media {sha256[:12]} as a {use.kind}, but it is a {row.extension} file"
            raise _bad(bundle.path, what)
    created = 0
    for sha256 in sorted(needed):
        item = bundle.media.get(sha256)
        if item is None:
            continue
        stored = studio.store_file(session, item.path, item.extension)
        if stored.sha256 != sha256:  # pragma: no cover - hashed when extracted
            raise InvalidInput(f"media {sha256} changed while it was being stored")
        created += stored.created
    return created


@contextmanager
def rows_checked(path: Path) -> Iterator[None]:
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
