"""Hostile input at the command line and the Python API: every bad input tried, and what the user sees.

Each row is one input that once ended in a traceback, a wrong message or silently wrong data. What must hold for
every row: exit status 1, one line on standard error that starts ``error:`` and names the problem, the JSON error
object with ``--json``, no traceback, and nothing changed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import continuity
from app.cli import main
from projects.errors import InvalidInput, StudioError

Setup = Callable[[Path, Path], list[str]]  # (data dir, scratch folder) -> the command's arguments


def board(folder: Path, name: str, shot: dict[str, Any] | str) -> str:
    """A storyboard file with one shot (a dict), or with the given text."""
    path = folder / f"{name}.json"
    if isinstance(shot, str):
        path.write_text(shot)
    else:
        path.write_text(
            json.dumps({"project": name, "settings": {"width": 64, "height": 64, "fps": 8}, "shots": [shot]})
        )
    return str(path)


def deep(data: Path, folder: Path) -> list[str]:
    return ["import", board(folder, "deep", '{"project": "Deep", "shots": ' + "[" * 100_000 + "]" * 100_000 + "}")]


def media_is_a_file(data: Path, folder: Path) -> list[str]:
    data.mkdir(parents=True)
    (data / "media").write_text("not a folder")
    return ["project", "list"]


def database_is_a_folder(data: Path, folder: Path) -> list[str]:
    (data / "continuity.db").mkdir(parents=True)
    return ["project", "list"]


CASES = [
    pytest.param(deep, "nested too deeply", id="json-nested-100000-deep"),
    pytest.param(
        lambda d, f: ["import", board(f, "Huge", {"prompt": "p", "duration": 10**400})],
        "shot 1.duration: must be a number of seconds; a number of about 400 digits is far too large",
        id="duration-10**400",
    ),
    pytest.param(
        lambda d, f: ["import", board(f, "Inf", '{"project": "Inf", "shots": [{"prompt": "p", "duration": 1e999}]}')],
        "shot 1.duration: must be a number of seconds, a finite one",
        id="duration-1e999",
    ),
    pytest.param(
        lambda d, f: ["import", board(f, "Arabic", {"prompt": "p", "duration": 1, "camera": "w-٣"})],
        "needs a positive frame count after '-' (digits 0-9)",
        id="camera-arabic-indic-digit",
    ),
    pytest.param(
        lambda d, f: ["import", board(f, "Long", {"prompt": "p", "duration": 1, "camera": "w-" + "9" * 5000})],
        "needs a positive frame count",
        id="camera-5000-digit-count",
    ),
    pytest.param(lambda d, f: ["project", "create", "\x1b[31mred"], "control characters", id="name-terminal-escape"),
    pytest.param(media_is_a_file, "as the media folder", id="media-folder-is-a-file"),
    pytest.param(database_is_a_folder, "cannot open", id="database-is-a-folder"),
    pytest.param(lambda d, f: ["render", "Nope", "--seed", str(10**30)], "seed", id="seed-10**30"),
]


@pytest.mark.parametrize(("setup", "message"), CASES)
def test_a_bad_input_gets_one_line_in_words(
    setup: Setup, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    args = setup(data, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) if data.exists() else None

    code = main([*args, "--data-dir", str(data), "--json"])

    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert json.loads(out)["error"]["message"] in err
    if before is not None:
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing was changed


def test_a_missing_video_is_named_when_scoring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["import", board(tmp_path, "Film", {"prompt": "p", "duration": 1}), "--data-dir", str(data)]) == 0
    assert main(["render", "Film", "--wait", "--data-dir", str(data)]) == 0
    video = next((data / "media").rglob("*.mp4"))
    video.unlink()
    capsys.readouterr()

    code = main(["score", "Film", "--rescore", "--data-dir", str(data)])

    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: the video of take 1 (shot 1) is missing") and "run verify" in err


def test_the_python_api_raises_studio_errors_in_words(tmp_path: Path) -> None:
    studio = continuity.open(tmp_path / "data")
    try:
        film = studio.create_project("Film", width=64, height=64, fps=8)
        with pytest.raises(InvalidInput, match="keyframe: "):
            film.add_shot("p", 1, keyframe="a\x00b.png")
        with pytest.raises(InvalidInput, match="nested too deeply"):
            studio.import_storyboard(deep(tmp_path / "data", tmp_path)[1])
        assert film.shots() == []
    finally:
        studio.close()
    shutil.rmtree(tmp_path / "data" / "media")
    (tmp_path / "data" / "media").write_text("not a folder")
    with pytest.raises(StudioError, match="as the media folder"):
        continuity.open(tmp_path / "data")
