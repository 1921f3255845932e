"""Writing export files safely: checking an output path before anything is made, and writing each file whole.

Every file an export makes is written to a temporary name beside its target and renamed into place only when
complete, so an export that fails or is interrupted leaves nothing at the output path (an existing file there stays
as it was); the files of one export are put in place together (:func:`together`), and what a killed export left
is removed by the next export into that folder.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
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
    sweep_abandoned(folder)  # once per output path, not for every file an export writes there
    return path


@contextlib.contextmanager
def replacing(path: Path, field: str) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block completes, removed when it fails.

    Inside :func:`together`, the rename waits for the whole group. The temporary name carries this process's id,
    so what a killed export leaves is recognised and removed (:func:`sweep_abandoned`, when the next export's
    output path is checked).
    """
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=PART)
    except OSError as exc:
        raise InvalidInput(f"cannot write in the folder {path.parent}: {exc.strerror or exc}", field) from exc
    os.close(fd)
    temp = Path(name)
    group = _GROUP.get()
    try:
        yield temp
        with temp.open("rb") as f:
            os.fsync(f.fileno())
        temp.chmod(0o666 & ~_umask())  # as the user's other files are made, not owner-only as a temp file is
        if group is not None:
            group.append((temp, path))
            temp = None  # the group renames it, or removes it
            return
        _place(temp, path)
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


@contextlib.contextmanager
def together() -> Iterator[None]:
    """Files written with :func:`replacing` inside this block are put in place only when the block completes,
    and none of them if it fails: an export whose timeline fails leaves the earlier film where it was."""
    pending: list[tuple[Path, Path]] = []
    token = _GROUP.set(pending)
    try:
        yield
        _GROUP.reset(token)
        token = None
        for temp, path in pending:
            _place(temp, path)
    finally:
        if token is not None:
            _GROUP.reset(token)
        for temp, _ in pending:
            temp.unlink(missing_ok=True)


def sweep_abandoned(folder: Path) -> int:
    """Remove the temporary files that exports killed before they finished left in ``folder``. Returns how many.

    A temporary file is ``.<name>.<pid>.<random>.part``: it is abandoned when no process of that id runs.
    """
    removed = 0
    with contextlib.suppress(OSError):
        for leftover in folder.glob(f".*{PART}"):
            match = _TEMP_NAME.match(leftover.name)
            if match is None or _alive(int(match[1])):
                continue
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
    return removed


PART = ".part"
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+\.part$")
_GROUP: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("export_group", default=None)


def _place(temp: Path, path: Path) -> None:
    temp.replace(path)
    with contextlib.suppress(OSError):  # some file systems cannot open a folder to sync it
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's process
        return True
    return True


def _umask() -> int:
    """This process's umask, read without changing it (``os.umask`` sets it, which other threads would see)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022
