"""Storyboard uploads from the page: one zip, or loose files whose folders the browser dropped.

A storyboard names its pictures by paths relative to itself (``refs/mara.png``). A zip keeps that layout and is
unpacked, checked entry by entry before anything is written (no absolute paths, ``..``, links, encrypted or
duplicate entries, nothing but the storyboard and pictures, bounded counts and sizes), into a private staging
folder; loose files (the browser keeps only their bare names) are put back where the storyboard names them. The
import itself is :func:`projects.storyboard_file.import_storyboard`'s, all or nothing, and the staging folder is
removed whether it succeeds or not. Messages name files as the user knows them, never by a server path.
"""

from __future__ import annotations

import csv
import io
import lzma
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from projects.errors import InvalidInput, StudioError, in_words
from projects.images import MAX_IMAGE_BYTES
from projects.records import ImportResult
from projects.staging import staging_folder
from projects.storyboard_file import MAX_STORYBOARD_BYTES, csv_delimiter, import_storyboard, parse_json
from projects.studio import Studio

STORYBOARD_SUFFIXES = (".json", ".csv")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_UPLOAD_FILES = 2000  # in one upload or one zip: a full cast with its references, and keyframes for the shots
MAX_ZIP_BYTES = 1024 * 1024 * 1024  # a zip, and also everything in it once unpacked (a zip bomb stops here)
MAX_ZIP_DIRECTORY_BYTES = 4 * 1024 * 1024  # a zip's table of contents, which is read whole before anything else
_MIB_ZIP = MAX_ZIP_BYTES // 2**20
# What file managers add by themselves (Finder's __MACOSX/ folder and ._ files, Explorer's Thumbs.db) is skipped:
# refusing it would refuse most zips made on a Mac.
_CLUTTER_FOLDER = "__MACOSX"
_CLUTTER = re.compile(r"\.ds_store|thumbs\.db|desktop\.ini|\._.*", re.IGNORECASE)
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class Upload:
    """A file someone uploaded: where the server keeps it, and the name they know it by (the one messages use)."""

    path: Path
    name: str


def import_upload(studio: Studio, uploads: Sequence[Upload], *, project: str | None = None) -> ImportResult:
    """Import a storyboard uploaded with its pictures: one ``.zip``, or the storyboard and its pictures as loose files.

    A zip keeps the storyboard's folders (``refs/mara.jpg``). Loose files have lost theirs (a browser uploads bare
    file names, even of a folder), so each picture the storyboard names is found among them by its file name; two
    different uploads of one name are refused, since only a zip can tell them apart. Either way the files are laid
    out in a staging folder of the media store, imported from there by :func:`import_storyboard` (all or nothing,
    into ``project`` when given), and the folder is removed whether the import succeeded or not. Error messages name
    files as the uploader knows them, never by where the server keeps them.
    """
    if not uploads:
        raise InvalidInput("choose a storyboard (.json or .csv) with its pictures, or a .zip holding them")
    zips = [upload for upload in uploads if upload.name.lower().endswith(".zip")]
    with staging_folder(studio.media) as staging:
        folder = staging / "upload"
        shown = {str(upload.path.parent): "the upload" for upload in uploads}
        shown |= {str(upload.path): upload.name for upload in uploads}
        shown |= {str(staging): "the upload", str(staging.resolve()): "the upload"}
        unpacked_as = zips[0].name if zips else "the uploaded files"
        shown |= {str(folder): unpacked_as, str(folder.resolve()): unpacked_as}
        try:
            folder.mkdir()
            if zips and len(uploads) > 1:
                raise InvalidInput(
                    f"{zips[0].name} is a zip: upload it on its own, with the storyboard and pictures in it"
                )
            board = _unpack_zip(zips[0], folder) if zips else _lay_out(uploads, folder)
            return import_storyboard(studio, board, project=project)
        except Exception as exc:
            words = in_words(exc)
            if words is None:
                raise
            raise _named_as_uploaded(words, shown) from None


def _named_as_uploaded(exc: StudioError, shown: dict[str, str]) -> StudioError:
    """``exc`` with every server path in its message replaced by the name its uploader knows (longest path first)."""

    def scrub(text: str) -> str:
        for path in sorted(shown, key=len, reverse=True):
            text = text.replace(path, shown[path])
        return text

    if isinstance(exc, InvalidInput):
        return type(exc)(scrub(exc.reason), exc.field)
    try:
        return type(exc)(scrub(str(exc)))
    except TypeError:  # a subclass with a constructor of its own
        return StudioError(scrub(str(exc)))


def _unpack_zip(upload: Upload, folder: Path) -> Path:
    """Unpack a storyboard's zip into ``folder`` and return the storyboard's path there.

    Everything is checked before the first byte is unpacked. Refused: a zip over :data:`MAX_ZIP_BYTES`, packed or
    unpacked (a zip bomb), or with more than :data:`MAX_UPLOAD_FILES` entries; an entry with an absolute path or a
    ``..``, a link or another special file, an encrypted one, a name given twice (letter case aside, as Windows and
    macOS see names), a file that is neither the storyboard nor a picture, or one over its own size limit; no
    storyboard or more than one; a storyboard deeper than one top folder, or a picture outside the storyboard's
    folder.
    """
    name = upload.name
    size = upload.path.stat().st_size
    if size > MAX_ZIP_BYTES:
        raise InvalidInput(f"{name} is {size / 2**20:.0f} MiB; a storyboard's zip may be at most {_MIB_ZIP} MiB")
    try:
        with upload.path.open("rb") as handle:
            _check_zip_directory(handle, name)
            with zipfile.ZipFile(handle) as archive:
                board, files = _checked_entries(archive, name)
                written = 0
                for info, parts in files:
                    target = folder.joinpath(*parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source, target.open("xb") as sink:
                        while chunk := source.read(1024 * 1024):
                            written += len(chunk)
                            if written > MAX_ZIP_BYTES:  # zipfile stops at each entry's stated size; this is a spare
                                raise InvalidInput(f"{name} unpacks to more than {_MIB_ZIP} MiB; refused")
                            sink.write(chunk)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError) as exc:
        raise InvalidInput(f"{name} is not a zip file the studio can read ({exc})") from None
    return folder.joinpath(*board)


def _check_zip_directory(handle: Any, name: str) -> None:
    """Refuse a zip whose table of contents is too large, before :class:`zipfile.ZipFile` reads all of it into memory.

    ``zipfile._EndRecData`` is private, but it is the reader ``ZipFile`` itself uses for the end record; the record's
    entry count can lie, so the table's size in bytes is checked too.
    """
    try:
        end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
    except OSError:  # shorter than an end record
        end = None
    if not end:
        raise InvalidInput(f"{name} is not a zip file")
    entries, table = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > MAX_UPLOAD_FILES or table > MAX_ZIP_DIRECTORY_BYTES:
        raise InvalidInput(f"{name} holds more than {MAX_UPLOAD_FILES} files; a storyboard's zip may hold no more")
    handle.seek(0)


def _checked_entries(archive: zipfile.ZipFile, name: str) -> tuple[list[str], list[tuple[zipfile.ZipInfo, list[str]]]]:
    """The storyboard's path parts and the files to unpack (with theirs), or :class:`InvalidInput` naming the entry."""
    infos = archive.infolist()
    if len(infos) > MAX_UPLOAD_FILES:
        raise InvalidInput(f"{name} holds {len(infos)} files; a storyboard's zip may hold at most {MAX_UPLOAD_FILES}")
    files: list[tuple[zipfile.ZipInfo, list[str]]] = []
    seen: set[str] = set()
    total = 0
    for info in infos:
        entry = info.filename
        text = entry.replace("\\", "/")  # some Windows tools write backslashes; read them as the separators they mean
        if text.startswith("/") or _DRIVE.match(text):
            raise InvalidInput(f"{name}: {entry} is an absolute path; paths in a zip are relative to it")
        parts = [part for part in text.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise InvalidInput(f"{name}: {entry} climbs out of the zip with '..'; refused")
        kind = stat.S_IFMT(info.external_attr >> 16)  # a Unix file type, where the zip was made on Unix; else 0
        if kind == stat.S_IFLNK:
            raise InvalidInput(f"{name}: {entry} is a symbolic link; a storyboard's zip holds only files")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InvalidInput(f"{name}: {entry} is not a plain file; a storyboard's zip holds only files")
        if info.flag_bits & 0x1:
            raise InvalidInput(f"{name}: {entry} is encrypted; zip the storyboard without a password")
        if not parts or text.endswith("/") or parts[0] == _CLUTTER_FOLDER or _CLUTTER.fullmatch(parts[-1]):
            continue  # a folder (made as its files are unpacked), or what a file manager added
        key = "/".join(parts).casefold()
        if key in seen:
            raise InvalidInput(f"{name}: {entry} appears twice (letter case aside); a zip names each file once")
        seen.add(key)
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        if suffix not in STORYBOARD_SUFFIXES + PICTURE_SUFFIXES:
            raise InvalidInput(
                f"{name}: {entry} is neither a storyboard (.json, .csv) nor a picture (.png, .jpg, .jpeg, .webp); "
                "a storyboard's zip holds only those"
            )
        limit = MAX_STORYBOARD_BYTES if suffix in STORYBOARD_SUFFIXES else MAX_IMAGE_BYTES
        if info.file_size > limit:
            raise InvalidInput(
                f"{name}: {entry} is {info.file_size / 2**20:.0f} MiB; the limit is {limit // 2**20} MiB"
            )
        total += info.file_size
        if total > MAX_ZIP_BYTES:
            raise InvalidInput(f"{name} unpacks to more than {_MIB_ZIP} MiB; refused")
        files.append((info, parts))
    folders = {"/".join(parts[:end]).casefold() for _, parts in files for end in range(1, len(parts))}
    for info, parts in files:
        if "/".join(parts).casefold() in folders:
            raise InvalidInput(f"{name}: {info.filename} is both a file and a folder")
    boards = [(info, parts) for info, parts in files if PurePosixPath(parts[-1]).suffix.lower() in STORYBOARD_SUFFIXES]
    if not boards:
        raise InvalidInput(f"{name} holds no storyboard (.json or .csv)")
    if len(boards) > 1:
        listed = ", ".join(info.filename for info, _ in boards[:5])
        raise InvalidInput(f"{name} holds {len(boards)} storyboards ({listed}); a zip holds one, with its pictures")
    info, board = boards[0]
    if len(board) > 2:
        raise InvalidInput(
            f"{name}: {info.filename} is too deep; put the storyboard at the top of the zip, or in one folder there, "
            "with its pictures' folders beside it"
        )
    home = board[:-1]
    for other, parts in files:
        if parts[: len(home)] != home:
            raise InvalidInput(
                f"{name}: {other.filename} is outside the storyboard's folder {home[0]}/, where its paths cannot reach"
            )
    return board, files


def _lay_out(uploads: Sequence[Upload], folder: Path) -> Path:
    """Put loose uploads where the storyboard among them names them (``refs/mara.jpg``) and return its path there.

    The browser sent bare file names, so a picture is found by the last part of the path the storyboard gives.
    Pictures it names that were not uploaded are left for :func:`import_storyboard` to report, with the shot or
    character that names them; uploaded pictures it does not name are ignored.
    """
    wanted = [upload for upload in uploads if not _CLUTTER.fullmatch(upload.name)]
    if len(wanted) > MAX_UPLOAD_FILES:
        raise InvalidInput(f"{len(wanted)} files were uploaded; a storyboard may come with at most {MAX_UPLOAD_FILES}")
    boards: list[Upload] = []
    pictures: dict[str, dict[Path, Upload]] = {}
    for upload in wanted:
        suffix = PurePosixPath(upload.name).suffix.lower()
        if suffix in STORYBOARD_SUFFIXES:
            boards.append(upload)
        elif suffix in PICTURE_SUFFIXES:
            pictures.setdefault(upload.name, {})[upload.path] = upload  # one file chosen twice is one file
        else:
            raise InvalidInput(
                f"{upload.name} is neither a storyboard (.json, .csv) nor a picture (.png, .jpg, .jpeg, .webp)"
            )
    if len(boards) != 1:
        found = f" (got {', '.join(upload.name for upload in boards[:5])})" if boards else ""
        raise InvalidInput(f"give exactly one storyboard (.json or .csv) with its pictures{found}")
    source = boards[0]
    size = source.path.stat().st_size
    if size > MAX_STORYBOARD_BYTES:
        raise InvalidInput(f"{source.name} is {size / 2**20:.1f} MiB; a storyboard may be at most 10 MiB")
    board = folder / (PurePosixPath(source.name).name or "storyboard.json")
    shutil.copyfile(source.path, board)
    for relative in _pictures_named(board):
        path = PurePosixPath(relative)
        if path.is_absolute() or ".." in path.parts or not path.name:
            continue  # the import refuses it, naming the shot or character
        found = list(pictures.get(path.name, {}).values())
        if not found:
            continue
        if len(found) > 1:
            raise InvalidInput(
                f"{len(found)} different uploaded pictures are named {path.name}, and the storyboard names "
                f"{relative}: upload the storyboard as a .zip with its folders, so each picture keeps its place"
            )
        target = folder / path
        if target.exists():
            continue  # named twice
        size = found[0].path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise InvalidInput(f"{found[0].name} is {size / 2**20:.0f} MiB; a picture may be at most 64 MiB")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0].path, target)
    return board


def _pictures_named(board: Path) -> list[str]:
    """The picture paths a storyboard names, read leniently: what is wrong with the file is for the import to say."""
    try:
        text = board.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        return []
    characters: Any = []
    shots: Any = []
    if board.suffix.lower() == ".csv":
        try:
            reader = csv.DictReader(io.StringIO(text), delimiter=csv_delimiter(text))
            reader.fieldnames = [(column or "").strip().lower() for column in reader.fieldnames or []]
            shots = list(reader)
        except csv.Error:
            return []
    else:
        try:
            data = parse_json(text)
        except (ValueError, RecursionError):
            return []
        if isinstance(data, dict):
            characters, shots = data.get("characters"), data.get("shots")
    named = []
    for character in characters if isinstance(characters, list) else []:
        references = character.get("references") if isinstance(character, dict) else None
        named += [ref.strip() for ref in references if isinstance(ref, str)] if isinstance(references, list) else []
    for shot in shots if isinstance(shots, list) else []:
        for key in ("keyframe", "last_frame"):
            value = shot.get(key) if isinstance(shot, dict) else None
            if isinstance(value, str) and value.strip():
                named.append(value.strip())
    return named
