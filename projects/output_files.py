"""Writing export files safely: checking an output path before anything is made, and writing each file whole.

Every file an export makes is written to a temporary name beside its target and renamed into place only when
complete, so an export that fails or is interrupted leaves nothing at the output path (an existing file there stays
as it was).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from projects.errors import InvalidInput


def check_output_path(path: Path | str, suffixes: Sequence[str], field: str) -> Path:
    """An absolute output path with one of ``suffixes``, in a folder that exists and can be written to.

    Checked by creating (and removing) a temporary file there, since permission bits do not say everything
    (a read-only mount, a root user, an ACL).
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise InvalidInput(f"{path.name!r} must end in {' or '.join(suffixes)}", field)
    path = path.absolute()
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInput(f"the folder {folder} {what}; create it first or choose another", field)
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; name a file", field)
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".check")
    except OSError as exc:
        raise InvalidInput(f"cannot write in the folder {folder}: {exc.strerror or exc}", field) from exc
    os.close(fd)
    Path(name).unlink()
    return path


@contextlib.contextmanager
def replacing(path: Path, field: str) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block completes, removed when it fails."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise InvalidInput(f"cannot write in the folder {path.parent}: {exc.strerror or exc}", field) from exc
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        with temp.open("rb") as f:
            os.fsync(f.fileno())
        temp.replace(path)
        with contextlib.suppress(OSError):  # some file systems cannot open a folder to sync it
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        temp.unlink(missing_ok=True)
