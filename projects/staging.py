"""Staging folders: where files wait that a write transaction is about to store from elsewhere (a bundle's media,
a storyboard's upload unpacked).

A staging folder lives in the media store's temporary folder and is locked (``flock``) for as long as its process
uses it; it is renamed into view only once locked. A process killed mid-unpack leaves its folder behind, unlocked,
and in the store the files its transaction had stored before the kill, with no row committed. The next open of the
data directory (:func:`remove_abandoned`) removes those files, the ones the folder names that no row knows, and
then the folder.
"""

from __future__ import annotations

import fcntl
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database
from storage.media import MediaStore
from storage.models import MediaObject

log = logging.getLogger(__name__)

PREFIX = "staging-"
_UNNAMED = ".new-"  # a staging folder until it is locked
UNNAMED_AGE = 3600.0  # seconds after which an unlocked, unnamed one is surely its dead process's
_LOCK = ".lock"
_STAGED = re.compile(r"([0-9a-f]{64})\.([a-z0-9]{1,10})")


@contextmanager
def staging_folder(store: MediaStore) -> Iterator[Path]:
    """A private, locked folder for files this process will store, named ``<sha256>.<extension>``; removed after."""
    hidden = Path(tempfile.mkdtemp(dir=store.temp_dir, prefix=_UNNAMED))
    lock = (hidden / _LOCK).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder = hidden.with_name(PREFIX + hidden.name.removeprefix(_UNNAMED))
        hidden.rename(folder)  # only now can an open see it, and it is locked already
        hidden = folder
        yield folder
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
        lock.close()


def remove_abandoned(db: Database, store: MediaStore) -> int:
    """Remove the staging folders of processes that died, and the files they stored and never committed.

    Returns how many folders went. Under the write lock, so no transaction is storing files meanwhile: a file
    in the store that no row names is nobody's. When the database is busy, nothing is removed (the next open
    tries again).
    """
    cutoff = time.time() - UNNAMED_AGE
    for unnamed in store.temp_dir.glob(_UNNAMED + "*"):  # killed before its folder was locked: it holds nothing
        with suppress(OSError):
            if unnamed.stat().st_mtime < cutoff:
                shutil.rmtree(unnamed, ignore_errors=True)
    abandoned: list[tuple[Path, IO[str]]] = []
    for folder in store.temp_dir.glob(PREFIX + "*"):
        lock = _unlocked(folder / _LOCK)
        if lock is not None:
            abandoned.append((folder, lock))
    if not abandoned:
        return 0
    try:
        try:
            with db.write() as session:
                session.connection()
                for folder, _ in abandoned:
                    for path in folder.iterdir():
                        named = _STAGED.fullmatch(path.name)
                        if named and session.get(MediaObject, named[1]) is None:
                            store.remove(named[1], named[2])
        except SQLAlchemyError as exc:
            log.warning("could not yet clean up after an interrupted unpack or merge: %s", exc)
            return 0
        for folder, _ in abandoned:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        for _, lock in abandoned:
            lock.close()
    log.info("removed what %d interrupted unpack(s) or merge(s) had left in the media store", len(abandoned))
    return len(abandoned)


def _unlocked(path: Path) -> IO[str] | None:
    """``path`` opened and locked, when no live process holds its lock; else None."""
    try:
        handle = path.open("a")
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
