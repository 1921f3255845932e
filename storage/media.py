"""Content-addressed media store under the data directory.

A file is named by the SHA-256 of its bytes (``media/ab/cd/abcd....png``), so the same reference image used
in two projects is stored once and a take's provenance can name its inputs by hash.

Order of side effects, which is what makes a crash harmless:

1. bytes go to a temporary file in ``media/.tmp`` and are fsynced;
2. the temporary file is renamed to its content path (atomic on one file system) and the folder is fsynced;
3. only then does the caller commit the row that references it.

Storing bytes whose content path already exists checks that file's own bytes: a copy damaged on disk (even one
of the same size) is replaced by the good bytes in the same atomic way, so storing the original again heals
what ``verify`` reports.

A crash before 2 leaves only a temporary file, which is not a content path and is swept the next time the
store opens; a crash between 2 and 3 leaves a complete file that no row references, which
:func:`remove_unrecorded_files` removes once it is old enough not to be another process's write in progress
(the render worker runs it when it starts). Deletions run the other way round: rows are committed first,
files removed after, and :func:`collect_orphans` finds the rows nothing references any more.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import event, inspect, select, union
from sqlalchemy.orm import ORMExecuteState, Session

from storage.models import Base, MediaObject

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_EXTENSION = re.compile(r"[a-z0-9]{1,10}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    extension: str
    byte_size: int
    path: Path
    created: bool  # False when the same bytes were already stored


@dataclass(frozen=True)
class MediaProblem:
    sha256: str
    path: Path
    problem: str  # "missing" or "hash mismatch"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _holds(path: Path, sha256: str, size: int) -> bool:
    """Whether ``path`` is a file of ``size`` bytes whose SHA-256 is ``sha256`` (sizes first: hashing costs)."""
    try:
        return path.is_file() and path.stat().st_size == size and file_sha256(path) == sha256
    except OSError:
        return False  # unreadable: replaced like a damaged copy


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.temp_dir = self.root / ".tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str, extension: str) -> Path:
        if not _SHA256.fullmatch(sha256) or not _EXTENSION.fullmatch(extension):
            raise ValueError(f"not a media name: {sha256}.{extension}")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.{extension}"

    def put_bytes(self, data: bytes, extension: str) -> StoredFile:
        return self.put_stream(io.BytesIO(data), extension)

    def put_file(self, source: Path, extension: str) -> StoredFile:
        with Path(source).open("rb") as f:
            return self.put_stream(f, extension)

    def put_stream(self, stream: BinaryIO, extension: str) -> StoredFile:
        """Copy ``stream`` into the store; returns where it lives. Storing the same bytes twice is a no-op, unless
        the stored copy no longer holds them (missing or damaged): then it is replaced (``created`` is True)."""
        extension = extension.lower().lstrip(".")
        if not _EXTENSION.fullmatch(extension):
            raise ValueError(f"unsupported file extension {extension!r}")
        digest = hashlib.sha256()
        size = 0
        fd, temp_name = tempfile.mkstemp(dir=self.temp_dir, suffix=".part")
        temp_path = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            final = self.path_for(sha256, extension)
            created = not _holds(final, sha256, size)
            if not created:
                temp_path.unlink()
                # Fresh again: the age guard in remove_unrecorded_files must see this file as just written.
                os.utime(final)
            else:
                if final.exists():
                    log.warning("replacing %s, which no longer held the bytes it is named by", final)
                final.parent.mkdir(parents=True, exist_ok=True)
                temp_path.replace(final)
                _fsync_dir(final.parent)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return StoredFile(sha256=sha256, extension=extension, byte_size=size, path=final, created=created)

    def remove(self, sha256: str, extension: str) -> None:
        """Remove a file whose row is already gone. Missing files are fine: removal is best-effort."""
        try:
            self.path_for(sha256, extension).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove media %s.%s: %s", sha256, extension, exc)

    def check(self, sha256: str, extension: str) -> str | None:
        """Return what is wrong with a stored file, or None when its bytes match its name."""
        path = self.path_for(sha256, extension)
        if not path.is_file():
            return "missing"
        if file_sha256(path) != sha256:
            return "hash mismatch"
        return None

    def sweep_temporary_files(self, min_age_seconds: float = 3600.0) -> int:
        """Remove temporary files left by a crash mid-write.

        Only files older than ``min_age_seconds``: another process may be writing the younger ones now.
        """
        removed = 0
        cutoff = time.time() - min_age_seconds
        for leftover in self.temp_dir.glob("*.part"):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("removed %d unfinished media file(s) left by an interrupted write", removed)
        return removed

    def stored_paths(self) -> Iterable[Path]:
        """Every content file on disk (for finding files that no row knows)."""
        for path in self.root.glob("??/??/*"):
            if path.is_file():
                yield path


# Noticing when a transaction may have orphaned a file, so that only those transactions look for orphans.

MAY_ORPHAN = "media_may_be_orphaned"


@event.listens_for(Session, "before_flush")
def _note_removed_references(session: Session, _context: object, _instances: object) -> None:
    """Rows deleted, or a media column (``*sha256``) changed: a file may have lost its last reference.
    (Files registered in the transaction are marked by :func:`register`.)"""
    if session.deleted or any(_media_column_changed(obj) for obj in session.dirty):
        session.info[MAY_ORPHAN] = True


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_statements(state: ORMExecuteState) -> None:
    """Bulk ``delete()`` and ``update()`` statements bypass the flush, so they count as well."""
    if state.is_delete or state.is_update:
        state.session.info[MAY_ORPHAN] = True


def _media_column_changed(obj: object) -> bool:
    attributes = inspect(obj).attrs
    return any(attr.key.endswith("sha256") and attr.history.has_changes() for attr in attributes)


def may_have_orphans(session: Session) -> bool:
    return bool(session.info.get(MAY_ORPHAN))


# Query helpers: they take a session and never commit.


def register(session: Session, stored: StoredFile) -> MediaObject:
    """Record a stored file in the database (idempotent)."""
    session.info[MAY_ORPHAN] = True  # until something references it, it is an orphan
    row = session.get(MediaObject, stored.sha256)
    if row is None:
        row = MediaObject(sha256=stored.sha256, extension=stored.extension, byte_size=stored.byte_size)
        session.add(row)
        session.flush()
    return row


def _referencing_columns() -> list:
    """Every column in the schema with a foreign key to ``media_objects.sha256``, found from the metadata."""
    target = MediaObject.__table__.c.sha256
    return [fk.parent for table in Base.metadata.sorted_tables for fk in table.foreign_keys if fk.column is target]


def collect_orphans(session: Session) -> list[tuple[str, str]]:
    """Delete media rows nothing references; return ``(sha256, extension)`` of files to remove after commit."""
    in_use = union(*(select(column).where(column.is_not(None)) for column in _referencing_columns()))
    orphans = session.execute(
        select(MediaObject.sha256, MediaObject.extension).where(MediaObject.sha256.not_in(in_use))
    ).all()
    for sha256, _ in orphans:
        session.delete(session.get(MediaObject, sha256))
    session.flush()
    return [(sha256, extension) for sha256, extension in orphans]


def verify(session: Session, store: MediaStore) -> list[MediaProblem]:
    """Re-hash every file the database knows; return the missing and corrupted ones."""
    problems = []
    for sha256, extension in session.execute(select(MediaObject.sha256, MediaObject.extension)).all():
        problem = store.check(sha256, extension)
        if problem:
            problems.append(MediaProblem(sha256, store.path_for(sha256, extension), problem))
    return problems


def remove_unrecorded_files(session: Session, store: MediaStore, min_age_seconds: float = 3600.0) -> int:
    """Remove content files no row knows (a crash between rename and commit), once they are old enough.

    The age guard keeps a file that another process has just renamed into place, and is about to commit,
    from being taken for an orphan.
    """
    known = set(session.scalars(select(MediaObject.sha256)))
    cutoff = time.time() - min_age_seconds
    removed = 0
    for path in store.stored_paths():
        if path.stem not in known and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d media file(s) that no row referenced", removed)
    return removed
