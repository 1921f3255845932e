"""Opening a data directory: the database, migrated, and the media store beside it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from projects.defaults import DATA_ENV, DEFAULT_DATA_DIR
from projects.errors import StudioError
from projects.images import CheckedImage
from projects.staging import remove_abandoned
from storage import media as media_rows
from storage.db import DATABASE_FILE, Database, open_database
from storage.media import MediaStore, StoredFile
from storage.migrate import MigrationError
from storage.models import MediaObject

log = logging.getLogger(__name__)

_STORED = "continuity.stored_media"  # session.info key: the files this write transaction stored


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """``--data-dir`` if given, else ``$CONTINUITY_DATA``, else ``./continuity-data``."""
    chosen = explicit or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


class Studio:
    """One open data directory. Services take it as their first argument.

    Writes go through :meth:`write`, which owns the transaction and the media side effects around it: files
    stored during a transaction that fails are removed again, and files left unreferenced by a committed
    deletion are removed after the commit.
    """

    def __init__(self, data_dir: Path, db: Database, media: MediaStore) -> None:
        self.data_dir = data_dir
        self.db = db
        self.media = media

    @contextmanager
    def write(self) -> Iterator[Session]:
        stored: list[StoredFile] = []
        try:
            with self.db.write() as session:
                session.connection()  # BEGIN IMMEDIATE now: files are stored only while holding the write lock
                session.info[_STORED] = stored
                yield session
                session.flush()
                orphans = media_rows.collect_orphans(session) if media_rows.may_have_orphans(session) else []
        except BaseException:
            self._forget_uncommitted(stored)
            raise
        if orphans:
            self._remove_orphans(orphans)

    def _remove_orphans(self, orphans: list[tuple[str, str]]) -> None:
        """Remove files whose rows a committed transaction deleted.

        Under the write lock, and only if no row came back meanwhile: another writer may have stored the same
        bytes (finding the file already there) and committed a reference between our commit and now.
        """
        with self.db.write() as session:
            session.connection()
            for sha256, extension in orphans:
                if session.get(MediaObject, sha256) is None:
                    self.media.remove(sha256, extension)

    def read(self) -> Iterator[Session]:
        return self.db.read()

    def store_file(self, session: Session, source: Path, extension: str) -> StoredFile:
        """Copy a file into the media store and record it in this write transaction.

        The one way a service stores a file: if the transaction then fails, the file is removed again (unless
        another row already held the same bytes). ``session`` must come from :meth:`write`.
        """
        return self._track(session, self.media.put_file(source, extension))

    def store_bytes(self, session: Session, data: bytes, extension: str) -> StoredFile:
        """:meth:`store_file` for bytes in memory (a frame taken from a video, a generated picture)."""
        return self._track(session, self.media.put_bytes(data, extension))

    def store_image(self, session: Session, image: CheckedImage) -> StoredFile:
        """Copy a checked image into the media store and record it in this transaction."""
        return self.store_file(session, image.path, image.extension)

    def _track(self, session: Session, stored: StoredFile) -> StoredFile:
        tracked = session.info.get(_STORED)
        if tracked is None:
            self._forget_uncommitted([stored])
            raise RuntimeError("files are stored only inside Studio.write(), which removes them if it fails")
        tracked.append(stored)
        media_rows.register(session, stored)
        return stored

    def _forget_uncommitted(self, stored: list[StoredFile]) -> None:
        if not stored:
            return
        with self.db.read() as session:
            for item in stored:
                if item.created and session.get(MediaObject, item.sha256) is None:
                    self.media.remove(item.sha256, item.extension)

    def close(self) -> None:
        self.db.close()


def open_studio(data_dir: str | Path | None = None) -> Studio:
    """Open a data directory (created if missing), upgrading its database to this version's schema."""
    path = resolve_data_dir(data_dir)
    if path.exists() and not path.is_dir():
        raise StudioError(f"the data directory {path} is a file; choose a folder with --data-dir")
    media = path / "media"
    if media.exists() and not media.is_dir():
        raise StudioError(
            f"cannot use {media} as the media folder: it is a file; move it away or choose another --data-dir"
        )
    try:
        db = open_database(path)
    except MigrationError as exc:
        raise StudioError(str(exc)) from exc
    except DatabaseError as exc:
        raise _database_error(path, exc) from exc
    except OSError as exc:
        raise StudioError(f"cannot use {path} as the data directory: {exc.strerror or exc}") from exc
    try:
        store = MediaStore(media)
        store.sweep_temporary_files()
    except OSError as exc:
        db.close()
        raise StudioError(
            f"cannot use {media} as the media folder ({exc.strerror or exc}); it must be a folder the studio can "
            "write to"
        ) from exc
    with suppress(OSError):
        remove_abandoned(db, store)  # what a process killed mid-unpack left in the store (projects.staging)
    return Studio(path, db, store)


def _database_error(path: Path, exc: DatabaseError) -> StudioError:
    """Words for a database that would not open: damaged is not the same as unwritable."""
    text = str(exc.orig)
    if "readonly" in text or "read-only" in text or "unable to open" in text or not os.access(path, os.W_OK):
        return StudioError(
            f"cannot open {path / DATABASE_FILE} for writing ({text}): the data directory must be a folder this "
            "user can read and write, on a disk that is not read-only; the database itself was not touched"
        )
    if "locked" in text or "busy" in text:
        return StudioError(f"{path / DATABASE_FILE} is in use by another program ({text}); try again in a moment")
    return StudioError(
        f"{path / DATABASE_FILE} is not a database Continuity can open ({text}); "
        "restore it from a backup or choose another --data-dir"
    )
