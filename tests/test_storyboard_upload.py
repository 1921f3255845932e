"""Importing a storyboard through the page's upload: a zip with its ``refs/`` folder, loose files and a folder (which
the browser flattens to bare names), into a new project or the open one; and hostile zips refused with a clear
message that leaves nothing behind (no project, no stored file, no staging folder) and names no server path.

The panel's callback (:func:`app.panels.projects.import_storyboard_upload`, wrapped in ``user_errors`` as the page
wraps it) runs against the real SQLite studio of the ``studio`` fixture. Uploads are laid out as Gradio keeps them:
``<upload dir>/<hash>/<bare name>``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from app.panels.common import user_errors
from app.panels.projects import NAMED_PROJECT, OPEN_PROJECT, import_storyboard_upload
from projects import storyboard_upload
from projects.cast import add_character, list_characters
from projects.project import create_project, list_projects
from projects.records import ImportResult
from projects.storyboard import all_shots
from projects.studio import Studio

BOARD: dict[str, Any] = {
    "project": "The Lighthouse",
    "settings": {"width": 640, "height": 384, "fps": 16},
    "characters": [
        {"name": "Mara", "description": "a red-haired keeper", "references": ["refs/mara_front.png", "refs/mara.jpg"]}
    ],
    "shots": [
        {"title": "Arrival", "prompt": "Mara climbs the stairs", "characters": ["Mara"], "duration": 4.0,
         "keyframe": "refs/stairs.png", "last_frame": "refs/shots/lamp.webp"},
        {"title": "Night", "prompt": "The sea at night", "duration": 3},
    ],
}  # fmt: skip


@pytest.fixture
def pictures(photos: dict[str, Path]) -> dict[str, bytes]:
    """The storyboard's pictures by the paths it names them with."""
    return {
        "refs/mara_front.png": photos["astronaut"].read_bytes(),
        "refs/mara.jpg": photos["chelsea"].read_bytes(),
        "refs/stairs.png": photos["coffee"].read_bytes(),
        "refs/shots/lamp.webp": photos["rocket"].read_bytes(),
    }


def board_bytes(data: dict[str, Any] | None = None) -> bytes:
    return json.dumps(data or BOARD).encode()


def uploaded(tmp_path: Path, name: str, data: bytes) -> str:
    """A file as Gradio hands it to a callback: its bare name, in a folder named by a hash of its content."""
    folder = tmp_path / "gradio" / hashlib.sha256(name.encode() + data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return str(folder / name)


class Encrypted(zipfile.ZipInfo):
    """An entry marked as encrypted (``zipfile`` writes no encryption, so :func:`make_zip` sets the flag after)."""


def u16(data: bytearray, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little")


def mark_encrypted(data: bytearray, name: str) -> None:
    """Set bit 0 of the general purpose flags in ``name``'s local header and in its central directory record."""
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        local, central = archive.getinfo(name).header_offset, archive.start_dir
    while data[central + 46 : central + 46 + u16(data, central + 28)] != name.encode():
        central += 46 + u16(data, central + 28) + u16(data, central + 30) + u16(data, central + 32)
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1


def make_zip(tmp_path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], name: str = "lighthouse.zip") -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in entries:
            archive.writestr(entry, data)
    written = bytearray(buffer.getvalue())
    for entry, _ in entries:
        if isinstance(entry, Encrypted):
            mark_encrypted(written, entry.filename)
    return uploaded(tmp_path, name, bytes(written))


def good_entries(pictures: dict[str, bytes], top: str = "") -> list[tuple[str | zipfile.ZipInfo, bytes]]:
    return [(f"{top}board.json", board_bytes()), *((top + name, data) for name, data in pictures.items())]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_import(studio: Studio, files: list[str] | None, *, folder: list[str] | None = None, **kw: Any) -> ImportResult:
    """The page's callback as the page runs it: a refusal comes out as a ``gr.Error``."""
    target = kw.pop("target", NAMED_PROJECT)
    return user_errors(import_storyboard_upload)(studio, files, folder, target, kw.pop("project_id", None))


def assert_imported_with_pictures(studio: Studio, result: ImportResult, pictures: dict[str, bytes]) -> None:
    assert (result.project.name, result.shots_added, result.characters_added) == ("The Lighthouse", 2, 1)
    (mara,) = list_characters(studio, result.project.id)
    assert [ref.sha256 for ref in mara.references] == [
        sha(pictures["refs/mara_front.png"]),
        sha(pictures["refs/mara.jpg"]),
    ]
    assert all(ref.path.is_file() for ref in mara.references)
    first, second = all_shots(studio, result.project.id)
    assert (first.keyframe.source, first.keyframe.sha256) == ("image", sha(pictures["refs/stairs.png"]))
    assert first.keyframe.path is not None and first.keyframe.path.read_bytes() == pictures["refs/stairs.png"]
    assert first.last_frame.sha256 == sha(pictures["refs/shots/lamp.webp"])
    assert second.keyframe.source == "none"


def assert_left_nothing(studio: Studio) -> None:
    assert list_projects(studio) == []
    assert [path for path in studio.media.root.glob("??/??/*")] == []
    assert list(studio.media.temp_dir.iterdir()) == []


def refusal(studio: Studio, tmp_path: Path, files: list[str], **kw: Any) -> str:
    with pytest.raises(gr.Error) as caught:
        run_import(studio, files, **kw)
    message = caught.value.message
    assert str(tmp_path) not in message and "/tmp" not in message and "staging-" not in message, message
    assert "went wrong" not in message, message  # a refusal in words, not a bug
    return message


@pytest.mark.parametrize("top", ["", "lighthouse/"], ids=["at the root", "in one top folder"])
def test_a_zip_with_its_refs_folder_imports_with_its_pictures(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes], top: str
) -> None:
    clutter = [(f"__MACOSX/{top}._board.json", b"\x00\x05\x16\x07"), (f"{top}refs/.DS_Store", b"\x00")]
    folders = [(zipfile.ZipInfo(f"{top}refs/"), b""), (zipfile.ZipInfo(f"{top}refs/shots/"), b"")]
    result = run_import(studio, [make_zip(tmp_path, folders + good_entries(pictures, top) + clutter)])
    assert result.created_project
    assert_imported_with_pictures(studio, result, pictures)
    assert list(studio.media.temp_dir.iterdir()) == []  # the unpacked zip went with the import


def test_loose_files_the_browser_flattened_are_put_back_where_the_storyboard_names_them(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes]
) -> None:
    """A multi-file upload and a folder upload both arrive as bare names (``refs/`` is gone): each picture goes back
    to the path the storyboard gives, found by its file name; a picture it does not name is ignored."""
    flat = [uploaded(tmp_path, "board.json", board_bytes())]
    flat += [uploaded(tmp_path, Path(name).name, data) for name, data in pictures.items()]
    flat.append(uploaded(tmp_path, "unused.png", pictures["refs/stairs.png"]))
    result = run_import(studio, flat)
    assert_imported_with_pictures(studio, result, pictures)

    other = {**BOARD, "project": "From a folder"}
    folder = [uploaded(tmp_path, "other.json", board_bytes(other)), uploaded(tmp_path, ".DS_Store", b"\x00")]
    folder += [path for path in flat if not path.endswith(".json")]
    result = run_import(studio, None, folder=folder)
    assert result.project.name == "From a folder" and result.references_added == 2
    assert list(studio.media.temp_dir.iterdir()) == []


def test_a_csv_in_a_zip_imports_into_the_open_project_and_names_its_cast(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes], photos: dict[str, Path]
) -> None:
    opened = create_project(studio, "Harbour", width=640, height=384, fps=16)
    add_character(studio, opened.id, "Mara", references=[photos["astronaut"]])
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["scene", "prompt", "characters", "duration", "keyframe"])
    writer.writerow(["1", "Mara at the quay", "Mara", "2", "refs/stairs.png"])
    writer.writerow(["1", "The boat leaves", "", "3", ""])
    entries = [
        ("harbour/shots.csv", rows.getvalue().encode()),
        ("harbour/refs/stairs.png", pictures["refs/stairs.png"]),
    ]
    zipped = make_zip(tmp_path, entries)

    message = refusal(studio, tmp_path, [zipped], target=OPEN_PROJECT, project_id=None)
    assert "Open or create a project first" in message

    result = run_import(studio, [zipped], target=OPEN_PROJECT, project_id=opened.id)
    assert (result.project.id, result.created_project, result.shots_added) == (opened.id, False, 2)
    assert [p.name for p in list_projects(studio)] == ["Harbour"]  # not a project named after the CSV file
    first, second = all_shots(studio, opened.id)
    assert first.characters == ("Mara",) and first.keyframe.sha256 == sha(pictures["refs/stairs.png"])
    assert second.prompt == "The boat leaves"


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


HOSTILE: dict[str, tuple[Callable[[dict[str, bytes]], list[tuple[Any, bytes]]], list[str]]] = {
    "absolute path": (
        lambda p: [*good_entries(p), ("/etc/cron.d/evil.png", b"x")],
        ["/etc/cron.d/evil.png", "absolute"],
    ),
    "windows drive": (lambda p: [*good_entries(p), ("C:/evil.png", b"x")], ["C:/evil.png", "absolute"]),
    "dot dot": (lambda p: [*good_entries(p), ("refs/../../evil.png", b"x")], ["refs/../../evil.png", "'..'"]),
    "backslash dot dot": (lambda p: [*good_entries(p), ("..\\evil.png", b"x")], ["..\\evil.png", "'..'"]),
    "symlink": (lambda p: [*good_entries(p), (symlink("refs/link.png"), b"/etc/passwd")], ["refs/link.png", "link"]),
    "encrypted": (
        lambda p: [*good_entries(p), (Encrypted("refs/locked.png"), b"x")],
        ["refs/locked.png", "encrypted"],
    ),
    "duplicate": (lambda p: [*good_entries(p), ("refs/Stairs.PNG", b"x")], ["refs/Stairs.PNG", "twice"]),
    "not a picture": (lambda p: [*good_entries(p), ("refs/run.sh", b"rm -rf /")], ["refs/run.sh", "neither"]),
    "two storyboards": (lambda p: [*good_entries(p), ("b.csv", b"prompt,duration\na,1\n")], ["2 storyboards"]),
    "no storyboard": (lambda p: list(p.items()), ["holds no storyboard"]),
    "too deep": (lambda p: good_entries(p, "a/b/"), ["a/b/board.json", "too deep"]),
    "outside its folder": (lambda p: [*good_entries(p, "a/"), ("stray.png", b"x")], ["stray.png", "outside"]),
    "file and folder": (
        lambda p: [*good_entries(p), ("refs/stairs.png/x.png", b"x")],
        ["refs/stairs.png is both a file and a folder"],
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_zip_is_refused_naming_the_entry_and_leaves_nothing(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes], case: str
) -> None:
    entries, fragments = HOSTILE[case]
    message = refusal(studio, tmp_path, [make_zip(tmp_path, entries(pictures))])
    assert "lighthouse.zip" in message
    for fragment in fragments:
        assert fragment in message
    assert_left_nothing(studio)


def test_zip_bombs_and_crowds_are_refused_before_anything_is_unpacked(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One picture that would unpack to 65 MiB from a few hundred KiB.
    bomb = make_zip(tmp_path, [*good_entries(pictures), ("refs/bomb.png", bytes(65 * 2**20))], "bomb.zip")
    assert Path(bomb).stat().st_size < 2**20
    assert "refs/bomb.png is 65 MiB; the limit is 64 MiB" in refusal(studio, tmp_path, [bomb])
    # Many small files that add up (the limit lowered, so the test stays small).
    monkeypatch.setattr(storyboard_upload, "MAX_ZIP_BYTES", 2 * 2**20)
    many = [(f"refs/zero{i}.png", bytes(2**20)) for i in range(3)]
    assert "unpacks to more than" in refusal(studio, tmp_path, [make_zip(tmp_path, [*good_entries(pictures), *many])])
    monkeypatch.undo()
    # More entries than the limit: refused from the zip's table of contents, before it is read.
    monkeypatch.setattr(storyboard_upload, "MAX_UPLOAD_FILES", 5)
    crowd = make_zip(tmp_path, [*good_entries(pictures), *((f"refs/{i}.png", b"x") for i in range(5))])
    assert "holds more than 5 files" in refusal(studio, tmp_path, [crowd])
    assert_left_nothing(studio)


def test_what_is_not_a_zip_or_comes_with_one_is_refused(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes]
) -> None:
    fake = uploaded(tmp_path, "holiday.zip", b"PK\x03\x04 but not really a zip")
    assert "holiday.zip is not a zip file" in refusal(studio, tmp_path, [fake])
    truncated = Path(make_zip(tmp_path, good_entries(pictures), "cut.zip"))
    cut = uploaded(tmp_path, "cut.zip", truncated.read_bytes()[:-30])
    assert "cut.zip is not a zip file" in refusal(studio, tmp_path, [cut])
    zipped = make_zip(tmp_path, good_entries(pictures))
    extra = uploaded(tmp_path, "board.json", board_bytes())
    assert "upload it on its own" in refusal(studio, tmp_path, [zipped, extra])
    notes = uploaded(tmp_path, "notes.txt", b"remember the lamp")
    assert "notes.txt is neither a storyboard" in refusal(studio, tmp_path, [extra, notes])
    assert "Import the chosen files or the chosen folder" in refusal(studio, tmp_path, [extra], folder=[extra])
    assert_left_nothing(studio)


def test_two_pictures_of_one_name_loose_are_refused_and_a_zip_tells_them_apart(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes]
) -> None:
    board = {
        **BOARD,
        "characters": [{**BOARD["characters"][0], "references": ["refs/a/front.png", "refs/b/front.png"]}],
    }
    front = {"refs/a/front.png": pictures["refs/mara_front.png"], "refs/b/front.png": pictures["refs/mara.jpg"]}
    rest = {name: data for name, data in pictures.items() if "mara" not in name}
    loose = [uploaded(tmp_path, "board.json", board_bytes(board))]
    loose += [uploaded(tmp_path, Path(name).name, data) for name, data in {**front, **rest}.items()]
    message = refusal(studio, tmp_path, loose)
    assert "2 different uploaded pictures are named front.png" in message and ".zip" in message
    assert_left_nothing(studio)

    entries = [("board.json", board_bytes(board)), *front.items(), *rest.items()]
    result = run_import(studio, [make_zip(tmp_path, entries)])
    (mara,) = list_characters(studio, result.project.id)
    assert [ref.sha256 for ref in mara.references] == [sha(data) for data in front.values()]


def test_a_bad_storyboard_or_picture_is_named_as_the_user_knows_it_and_imports_nothing(
    studio: Studio, tmp_path: Path, pictures: dict[str, bytes]
) -> None:
    """The import's own refusals (a missing or broken picture, a wrong field) name the shot and the file as it is
    in the zip or the upload, never the staging folder the server unpacked it into."""
    missing = {**BOARD, "shots": [{**BOARD["shots"][0], "keyframe": "refs/gone.png"}]}
    zipped = make_zip(
        tmp_path, [("lighthouse/board.json", board_bytes(missing)), *good_entries(pictures, "lighthouse/")[1:]]
    )
    message = refusal(studio, tmp_path, [zipped])
    assert message.startswith("shot 1.keyframe: file not found: refs/gone.png (looked in lighthouse.zip/lighthouse)")

    broken = [(name, b"not a picture" if name == "refs/stairs.png" else data) for name, data in good_entries(pictures)]
    message = refusal(studio, tmp_path, [make_zip(tmp_path, broken)])
    assert message.startswith("shot 1.keyframe: ") and "stairs.png is not an image" in message

    flat = [uploaded(tmp_path, "board.json", board_bytes())]
    flat += [uploaded(tmp_path, Path(name).name, data) for name, data in pictures.items() if "stairs" not in name]
    message = refusal(studio, tmp_path, flat)
    assert message == "shot 1.keyframe: file not found: refs/stairs.png (looked in the uploaded files)"

    typo = {**BOARD, "shots": [{**BOARD["shots"][0], "duraton": 4}]}
    message = refusal(studio, tmp_path, [make_zip(tmp_path, [("board.json", board_bytes(typo)), *pictures.items()])])
    assert message.startswith("shot 1: unknown field(s) duraton")
    assert_left_nothing(studio)
