"""The command line, called in-process through ``app.cli.main`` against a real data directory.

Every command is run with ``--data-dir`` in a temp folder; ``--json`` output is parsed and checked against
the shapes the README documents. One test runs ``python app.py`` for real, in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from probes import free_port
from takes_made import finished_takes, queued_takes

from app.cli import main
from projects.studio import DATA_ENV, DEFAULT_DATA_DIR, open_studio
from storage.db import DATABASE_FILE

REPO = Path(__file__).parents[1]
PROJECT_KEYS = {"id", "name", "width", "height", "fps", "characters", "shots", "created_at"}
SHOT_KEYS = {
    "id",
    "number",
    "scene",
    "title",
    "prompt",
    "duration",
    "camera",
    "characters",
    "keyframe",
    "continue_from_previous",
    "takes",
    "approved_take_id",
    "picture",
    "stale",
    "last_frame",
    "last_frame_from_next",
    "keyframe_candidates",
}
TAKE_STATUS_KEYS = {"queued", "running", "done", "failed", "cancelled"}
STORYBOARD_SECONDS = 2.5 + 3 + 4 + 1.5 + 2


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the developer's data directory nor their credentials leak into a test."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.delenv("CONTINUITY_AUTH", raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "studio-data"


@pytest.fixture
def cli(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli("project", "list")`` runs ``main([..., "--data-dir", data_dir, "--json"])`` and captures it."""

    def call(*args: object, as_json: bool = True, data: Path | None = data_dir) -> Result:
        argv = [str(a) for a in args]
        if data is not None:
            argv += ["--data-dir", str(data)]
        if as_json:
            argv.append("--json")
        code = main(argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


@pytest.fixture
def board(tmp_path: Path, photos: dict[str, Path]) -> Path:
    """A JSON storyboard with one character (a real photo as reference), a keyframe image and five shots."""
    folder = tmp_path / "board"
    (folder / "refs").mkdir(parents=True)
    shutil.copy(photos["astronaut"], folder / "refs" / "astronaut.png")
    shutil.copy(photos["coffee"], folder / "refs" / "coffee.png")
    content = {
        "project": "Lighthouse",
        "settings": {"width": 512, "height": 320, "fps": 24},
        "characters": [{"name": "Mara", "description": "the keeper, grey coat", "references": ["refs/astronaut.png"]}],
        "shots": [
            {
                "scene": "1",
                "title": "Arrival",
                "prompt": "Mara walks up to the lighthouse at dusk",
                "duration": 2.5,
                "camera": "dolly-in",
                "characters": ["Mara"],
                "keyframe_character": "Mara",
            },
            {
                "scene": "1",
                "title": "Coffee",
                "prompt": "A cup of coffee steams",
                "duration": 3,
                "keyframe": "refs/coffee.png",
            },
            {"prompt": "Waves crash on the rocks", "duration": 4, "continue_from_previous": True},
            {"prompt": "The lamp turns", "duration": 1.5, "camera": "pan-left"},
            {"prompt": "Mara looks out to sea", "duration": 2, "characters": ["Mara"]},
        ],
    }
    path = folder / "lighthouse.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


@pytest.fixture
def imported(cli: Cli, board: Path) -> dict[str, Any]:
    result = cli("import", board)
    assert result.code == 0, result.err
    return result.json


def finished_take(data_dir: Path, shot_number: int) -> int:
    """A take of shot ``shot_number`` of Lighthouse, rendered by a worker; returns its id."""
    studio = open_studio(data_dir)
    try:
        [take] = finished_takes(studio, "Lighthouse", shot_number)
    finally:
        studio.close()
    return take.id


def queued_take(data_dir: Path, shot_number: int) -> int:
    studio = open_studio(data_dir)
    try:
        [take_id] = queued_takes(studio, "Lighthouse", shot_number)
    finally:
        studio.close()
    return take_id


# Projects.


def test_project_create_prints_the_project(cli: Cli) -> None:
    result = cli("project", "create", "The Lighthouse", "--width", 512, "--height", 320, "--fps", 24)

    assert result.code == 0
    assert result.err == ""
    project = result.json["project"]
    assert set(project) == PROJECT_KEYS
    assert project["name"] == "The Lighthouse"
    assert (project["width"], project["height"], project["fps"]) == (512, 320, 24)
    assert (project["characters"], project["shots"]) == (0, 0)
    assert isinstance(project["id"], int)
    assert project["created_at"].startswith("20")


def test_project_create_uses_default_settings(cli: Cli) -> None:
    project = cli("project", "create", "Defaults").json["project"]

    assert (project["width"], project["height"], project["fps"]) == (640, 384, 16)


def test_project_create_text_output(cli: Cli) -> None:
    result = cli("project", "create", "Plain", as_json=False)

    assert result.code == 0
    assert result.out.strip() == "created project 'Plain' (640x384, 16 fps)"


def test_project_create_normalises_the_name_to_nfc(cli: Cli) -> None:
    created = cli("project", "create", "  Cafe\u0301  ").json["project"]

    assert created["name"] == "Caf\u00e9"
    assert cli("shots", "caf\u00e9").json["project"]["id"] == created["id"]


def test_project_list_is_sorted_case_insensitively(cli: Cli) -> None:
    for name in ("zeta", "Alpha", "beta", "Gamma"):
        assert cli("project", "create", name).code == 0

    result = cli("project", "list")

    assert result.code == 0
    names = [p["name"] for p in result.json["projects"]]
    assert names == ["Alpha", "beta", "Gamma", "zeta"]
    assert all(set(p) == PROJECT_KEYS for p in result.json["projects"])


def test_project_list_when_empty(cli: Cli) -> None:
    assert cli("project", "list").json == {"projects": []}
    assert cli("project", "list", as_json=False).out.strip() == "no projects yet"


def test_duplicate_project_name_is_a_conflict(cli: Cli) -> None:
    assert cli("project", "create", "Mara").code == 0

    result = cli("project", "create", "MARA")

    assert result.code == 1
    assert result.json["error"]["type"] == "Conflict"
    assert [p["name"] for p in cli("project", "list").json["projects"]] == ["Mara"]


def test_project_rename(cli: Cli) -> None:
    created = cli("project", "create", "Draft").json["project"]

    result = cli("project", "rename", "draft", "Final Cut")

    assert result.code == 0
    assert result.json["project"]["id"] == created["id"]
    assert result.json["project"]["name"] == "Final Cut"
    assert [p["name"] for p in cli("project", "list").json["projects"]] == ["Final Cut"]
    assert cli("shots", "Draft").code == 1


def test_project_rename_onto_another_name_is_refused(cli: Cli) -> None:
    cli("project", "create", "One")
    cli("project", "create", "Two")

    result = cli("project", "rename", "One", "two")

    assert result.code == 1
    assert result.json["error"]["type"] == "Conflict"
    assert sorted(p["name"] for p in cli("project", "list").json["projects"]) == ["One", "Two"]


def test_project_delete_needs_yes(cli: Cli) -> None:
    cli("project", "create", "Keep Me")

    result = cli("project", "delete", "Keep Me", as_json=False)

    assert result.code == 1
    assert result.err.startswith("error: ")
    assert "--yes" in result.err
    assert [p["name"] for p in cli("project", "list").json["projects"]] == ["Keep Me"]


def test_project_delete_with_yes(cli: Cli, imported: dict[str, Any], data_dir: Path) -> None:
    reference = Path(cli("characters", "Lighthouse").json["characters"][0]["references"][0]["path"])
    assert reference.is_file()

    result = cli("project", "delete", "lighthouse", "--yes")

    assert result.code == 0
    assert result.json["deleted"]["name"] == "Lighthouse"
    assert result.json["deleted"]["shots"] == 5
    assert cli("project", "list").json == {"projects": []}
    assert not reference.exists(), "media only the deleted project used is removed"
    assert cli("verify").json == {"checked": 0, "problems": []}


def test_a_project_named_like_another_ones_id_is_never_deleted_by_mistake(cli: Cli) -> None:
    cli("project", "create", "First")  # id 1
    cli("project", "create", "1")  # id 2, named "1"

    ambiguous = cli("project", "delete", "1", "--yes")

    assert ambiguous.code == 1 and ambiguous.json["error"]["type"] == "Conflict"
    assert "#1" in ambiguous.json["error"]["message"] and "#2" in ambiguous.json["error"]["message"]
    assert sorted(p["name"] for p in cli("project", "list").json["projects"]) == ["1", "First"]
    by_id = cli("project", "delete", "#1", "--yes")
    assert by_id.code == 0 and by_id.json["deleted"]["name"] == "First"
    assert cli("project", "delete", "1", "--yes").json["deleted"]["name"] == "1"  # now only one project it can mean
    assert cli("project", "delete", "#9", "--yes").json["error"]["type"] == "NotFound"


# Importing a storyboard.


def test_import_json_storyboard(imported: dict[str, Any]) -> None:
    assert set(imported) == {"project", "created_project", "characters_added", "shots_added", "references_added"}
    assert imported["created_project"] is True
    assert imported["characters_added"] == 1
    assert imported["shots_added"] == 5
    assert imported["references_added"] == 1
    project = imported["project"]
    assert set(project) == PROJECT_KEYS
    assert project["name"] == "Lighthouse"
    assert (project["width"], project["height"], project["fps"]) == (512, 320, 24)
    assert (project["characters"], project["shots"]) == (1, 5)


def test_import_into_a_named_existing_project_appends(cli: Cli, board: Path, tmp_path: Path) -> None:
    cli("project", "create", "Other", "--width", 512, "--height", 320, "--fps", 24)
    extra = tmp_path / "extra.csv"
    extra.write_text("prompt,duration\nA gull lands,2\nIt flies off,1.5\n", encoding="utf-8")

    first = cli("import", board, "--project", "Other")
    second = cli("import", extra, "--project", "other")

    assert first.code == 0, first.err
    assert first.json["created_project"] is False
    assert second.code == 0, second.err
    assert second.json["created_project"] is False
    assert second.json["shots_added"] == 2
    assert second.json["project"]["shots"] == 7
    assert [p["name"] for p in cli("project", "list").json["projects"]] == ["Other"]
    shots = cli("shots", "Other").json["shots"]
    assert [s["number"] for s in shots] == [1, 2, 3, 4, 5, 6, 7]
    assert shots[-1]["prompt"] == "It flies off"


def test_import_text_output(cli: Cli, board: Path) -> None:
    result = cli("import", board, as_json=False)

    assert result.code == 0
    assert result.out.strip() == "created project 'Lighthouse': 5 shots, 1 characters, 1 reference images"


def test_import_of_a_bad_storyboard_imports_nothing(cli: Cli, board: Path) -> None:
    content = json.loads(board.read_text(encoding="utf-8"))
    content["shots"][3]["duration"] = -1
    board.write_text(json.dumps(content), encoding="utf-8")

    result = cli("import", board)

    assert result.code == 1
    assert result.json["error"]["type"] == "InvalidInput"
    assert "shot 4" in result.json["error"]["message"]
    assert cli("project", "list").json == {"projects": []}
    assert cli("verify").json["checked"] == 0


# Shots and characters.


def test_shots_lists_the_storyboard(cli: Cli, imported: dict[str, Any]) -> None:
    result = cli("shots", "Lighthouse")

    assert result.code == 0
    payload = result.json
    assert set(payload) == {"project", "total", "offset", "limit", "shots"}
    assert payload["project"] == {**imported["project"], "created_at": payload["project"]["created_at"]}
    assert (payload["total"], payload["offset"], payload["limit"]) == (5, 0, 100)
    shots = payload["shots"]
    assert all(set(s) == SHOT_KEYS for s in shots)
    assert [s["number"] for s in shots] == [1, 2, 3, 4, 5]
    assert [s["duration"] for s in shots] == [2.5, 3.0, 4.0, 1.5, 2.0]
    first, second, third = shots[:3]
    assert (first["scene"], first["title"], first["camera"]) == ("1", "Arrival", "dolly-in")
    assert first["characters"] == ["Mara"]
    assert first["keyframe"] == {"source": "character", "character": "Mara"}
    assert second["keyframe"]["source"] == "image"
    assert Path(second["keyframe"]["path"]).is_file()
    assert len(second["keyframe"]["sha256"]) == 64
    assert third["keyframe"] == {"source": "none"}
    assert third["continue_from_previous"] is True
    assert first["continue_from_previous"] is False
    assert shots[3]["camera"] == "pan-left"
    assert all(s["takes"] == 0 and s["approved_take_id"] is None for s in shots)


def test_shots_paging(cli: Cli, imported: dict[str, Any]) -> None:
    page = cli("shots", "Lighthouse", "--offset", 1, "--limit", 2).json

    assert (page["total"], page["offset"], page["limit"]) == (5, 1, 2)
    assert [s["number"] for s in page["shots"]] == [2, 3]

    tail = cli("shots", "Lighthouse", "--offset", 4, "--limit", 2).json
    assert [s["number"] for s in tail["shots"]] == [5]

    beyond = cli("shots", "Lighthouse", "--offset", 10).json
    assert beyond["shots"] == []
    assert beyond["total"] == 5


@pytest.mark.parametrize(("option", "value"), [("--limit", 0), ("--limit", 501), ("--offset", -1)])
def test_shots_paging_out_of_range_is_an_error(cli: Cli, imported: dict[str, Any], option: str, value: int) -> None:
    result = cli("shots", "Lighthouse", option, value)

    assert result.code == 1
    assert result.json["error"]["type"] == "InvalidInput"
    assert option.lstrip("-") in result.json["error"]["message"]


def test_shots_text_output(cli: Cli, imported: dict[str, Any]) -> None:
    lines = cli("shots", "Lighthouse", as_json=False).out.splitlines()

    assert len(lines) == 5
    assert "Arrival" in lines[0]
    assert "[Mara]" in lines[0]
    assert "2.50s" in lines[0]


def test_characters_lists_the_cast(cli: Cli, imported: dict[str, Any]) -> None:
    result = cli("characters", "Lighthouse")

    assert result.code == 0
    (mara,) = result.json["characters"]
    assert set(mara) == {"id", "name", "description", "references"}
    assert (mara["name"], mara["description"]) == ("Mara", "the keeper, grey coat")
    (ref,) = mara["references"]
    assert set(ref) == {"id", "sha256", "path", "original_name", "width", "height"}
    assert ref["original_name"] == "astronaut.png"
    assert Path(ref["path"]).is_file()
    assert Path(ref["path"]).stem == ref["sha256"]
    assert max(ref["width"], ref["height"]) == 128


def test_character_add(cli: Cli, photos: dict[str, Path]) -> None:
    cli("project", "create", "Cats")

    result = cli(
        "character",
        "add",
        "Cats",
        "Chelsea",
        "--reference",
        photos["chelsea"],
        "--reference",
        photos["rocket"],
        "--description",
        "a tabby cat",
    )

    assert result.code == 0, result.err
    character = result.json["character"]
    assert (character["name"], character["description"]) == ("Chelsea", "a tabby cat")
    assert [r["original_name"] for r in character["references"]] == ["chelsea.jpg", "rocket.webp"]
    assert [Path(r["path"]).suffix for r in character["references"]] == [".jpg", ".webp"]
    listed = cli("characters", "cats").json["characters"]
    assert [c["name"] for c in listed] == ["Chelsea"]
    assert listed[0]["references"] == character["references"]
    assert cli("project", "list").json["projects"][0]["characters"] == 1


def test_character_add_with_a_broken_image_adds_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("project", "create", "Cats")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")

    result = cli("character", "add", "Cats", "Chelsea", "--reference", broken)

    assert result.code == 1
    assert result.json["error"]["type"] == "InvalidImage"
    assert cli("characters", "Cats").json == {"characters": []}


# Takes, approval and status.


def test_status_before_and_after_approving(cli: Cli, imported: dict[str, Any], data_dir: Path, tmp_path: Path) -> None:
    take_id = finished_take(data_dir, shot_number=2)

    before = cli("status", "Lighthouse")

    assert before.code == 0
    status = before.json
    assert set(status) == {
        "project",
        "shots",
        "shots_approved",
        "shots_missing_approval",
        "takes",
        "storyboard_seconds",
        "approved_seconds",
        "shot_takes",
    }
    assert status["project"]["name"] == "Lighthouse"
    assert [shot["number"] for shot in status["shot_takes"]] == [1, 2, 3, 4, 5]
    assert status["shot_takes"][0]["takes"] == []
    second = status["shot_takes"][1]["takes"]
    assert [(t["id"], t["take_number"], t["status"], t["approved"], t["seed"]) for t in second] == [
        (take_id, 1, "done", False, 7)
    ]
    assert second[0]["video"].endswith(".mp4") and second[0]["backend"] == "animatic"
    assert (status["shots"], status["shots_approved"]) == (5, 0)
    assert status["shots_missing_approval"] == [1, 2, 3, 4, 5]
    assert status["takes"] == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0}
    assert status["storyboard_seconds"] == pytest.approx(STORYBOARD_SECONDS)
    assert status["approved_seconds"] == 0

    approved = cli("approve", take_id)

    assert approved.code == 0, approved.err
    take = approved.json["take"]
    assert take["id"] == take_id
    assert take["approved"] is True
    assert (take["status"], take["shot_number"], take["take_number"]) == ("done", 2, 1)
    assert Path(take["video"]).is_file()

    after = cli("status", "Lighthouse").json
    assert (after["shots"], after["shots_approved"]) == (5, 1)
    assert after["shots_missing_approval"] == [1, 3, 4, 5]
    assert after["approved_seconds"] == pytest.approx(3.0)
    assert after["storyboard_seconds"] == pytest.approx(STORYBOARD_SECONDS)

    shot = cli("shots", "Lighthouse", "--offset", 1, "--limit", 1).json["shots"][0]
    assert (shot["number"], shot["takes"], shot["approved_take_id"]) == (2, 1, take_id)


def test_status_text_output(cli: Cli, imported: dict[str, Any]) -> None:
    text = cli("status", "Lighthouse", as_json=False).out

    assert text.startswith("Lighthouse: 0/5 shots approved (0.0s of 13.0s)")
    assert "no takes" in text
    assert "1, 2, 3, 4, 5" in text


def test_approving_another_take_replaces_the_approval(
    cli: Cli, imported: dict[str, Any], data_dir: Path, tmp_path: Path
) -> None:
    first = finished_take(data_dir, shot_number=1)
    second = finished_take(data_dir, shot_number=1)
    other_shot = finished_take(data_dir, shot_number=4)
    assert cli("approve", first).code == 0
    assert cli("approve", other_shot).code == 0

    assert cli("approve", second).code == 0

    listing = cli("takes", "Lighthouse", "--shot", 1).json
    assert set(listing) == {"total", "offset", "limit", "takes"}
    assert listing["total"] == 2
    assert [(t["id"], t["take_number"], t["approved"]) for t in listing["takes"]] == [
        (first, 1, False),
        (second, 2, True),
    ]
    assert all(t["shot_number"] == 1 for t in listing["takes"])
    all_takes = cli("takes", "Lighthouse").json["takes"]
    assert [(t["shot_number"], t["approved"]) for t in all_takes] == [(1, False), (1, True), (4, True)]


def test_takes_filters_by_status(cli: Cli, imported: dict[str, Any], data_dir: Path, tmp_path: Path) -> None:
    done = finished_take(data_dir, shot_number=1)
    queued = queued_take(data_dir, shot_number=1)

    assert [t["id"] for t in cli("takes", "Lighthouse", "--status", "queued").json["takes"]] == [queued]
    assert [t["id"] for t in cli("takes", "Lighthouse", "--status", "done").json["takes"]] == [done]
    bad = cli("takes", "Lighthouse", "--status", "finished")
    assert bad.code == 1
    assert bad.json["error"]["type"] == "InvalidInput"


def test_takes_of_a_missing_shot(cli: Cli, imported: dict[str, Any]) -> None:
    result = cli("takes", "Lighthouse", "--shot", 9)

    assert result.code == 1
    assert result.json["error"]["type"] == "NotFound"
    assert "no shot 9" in result.json["error"]["message"]


def test_approving_a_queued_take_is_a_conflict(cli: Cli, imported: dict[str, Any], data_dir: Path) -> None:
    take_id = queued_take(data_dir, shot_number=1)

    result = cli("approve", take_id)

    assert result.code == 1
    assert result.json["error"]["type"] == "Conflict"
    assert "queued" in result.json["error"]["message"]
    assert result.err.startswith("error: ")
    assert cli("status", "Lighthouse").json["shots_approved"] == 0
    assert cli("takes", "Lighthouse").json["takes"][0]["approved"] is False


def test_approving_a_missing_take(cli: Cli, imported: dict[str, Any]) -> None:
    result = cli("approve", 999)

    assert result.code == 1
    assert result.json["error"] == {"type": "NotFound", "message": "there is no take with id 999"}


# Verifying the media store.


def test_verify_a_clean_store(cli: Cli, imported: dict[str, Any]) -> None:
    result = cli("verify")

    assert result.code == 0
    assert result.json == {"checked": 2, "problems": []}  # the reference photo and the keyframe


def test_verify_an_empty_store(cli: Cli) -> None:
    result = cli("verify", as_json=False)

    assert result.code == 0
    assert result.out.strip() == "checked 0 file(s), 0 problem(s)"


def test_verify_finds_a_corrupted_reference(cli: Cli, imported: dict[str, Any]) -> None:
    ref = cli("characters", "Lighthouse").json["characters"][0]["references"][0]
    path = Path(ref["path"])
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted!")

    result = cli("verify")

    assert result.code == 1
    assert result.json["checked"] == 2
    assert result.json["problems"] == [{"sha256": ref["sha256"], "path": ref["path"], "problem": "hash mismatch"}]
    text = cli("verify", as_json=False)
    assert text.code == 1
    assert f"hash mismatch: {ref['path']}" in text.out


def test_verify_finds_a_missing_file(cli: Cli, imported: dict[str, Any]) -> None:
    keyframe = cli("shots", "Lighthouse").json["shots"][1]["keyframe"]
    Path(keyframe["path"]).unlink()

    result = cli("verify")

    assert result.code == 1
    assert [(p["sha256"], p["problem"]) for p in result.json["problems"]] == [(keyframe["sha256"], "missing")]


# Errors.

UNKNOWN_PROJECT_COMMANDS = [
    ["shots", "Nope"],
    ["characters", "Nope"],
    ["status", "Nope"],
    ["takes", "Nope"],
    ["character", "add", "Nope", "Mara"],
    ["project", "rename", "Nope", "Yes"],
    ["project", "delete", "Nope", "--yes"],
    ["project", "delete", "Nope"],
]


@pytest.mark.parametrize("args", UNKNOWN_PROJECT_COMMANDS, ids=lambda a: " ".join(a))
def test_unknown_project(cli: Cli, args: list[str]) -> None:
    cli("project", "create", "Known")

    plain = cli(*args, as_json=False)

    assert plain.code == 1
    assert plain.out == ""
    assert plain.err.startswith("error: ")
    assert "'Nope'" in plain.err
    assert "Traceback" not in plain.err

    as_json = cli(*args)

    assert as_json.code == 1
    error = as_json.json["error"]
    assert error["type"] == "NotFound"
    assert "'Nope'" in error["message"]
    assert "Known" in error["message"], "the message lists the projects there are"
    assert as_json.err.startswith("error: ")


@pytest.mark.parametrize("name", ["a/b", "  ", "back\\slash", "..", "tab\there"])
def test_invalid_project_name_creates_nothing(cli: Cli, name: str) -> None:
    result = cli("project", "create", name)

    assert result.code == 1
    assert result.json["error"]["type"] == "InvalidInput"
    assert "project name" in result.json["error"]["message"]
    assert result.err.startswith("error: project name")
    assert cli("project", "list").json == {"projects": []}


def test_invalid_name_from_import_option_creates_nothing(cli: Cli, board: Path) -> None:
    result = cli("import", board, "--project", "a/b")

    assert result.code == 1
    assert result.json["error"]["type"] == "InvalidInput"
    assert cli("project", "list").json == {"projects": []}


@pytest.mark.parametrize(("option", "value"), [("--width", 100), ("--height", 10_000), ("--fps", 0), ("--fps", 121)])
def test_invalid_project_settings_create_nothing(cli: Cli, option: str, value: int) -> None:
    result = cli("project", "create", "Sized", option, value)

    assert result.code == 1
    assert result.json["error"]["type"] == "InvalidInput"
    assert option.lstrip("-") in result.json["error"]["message"]
    assert cli("project", "list").json == {"projects": []}


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["project"],
        ["project", "create"],
        ["project", "explode", "x"],
        ["character"],
        ["approve", "abc"],
        ["shots", "P", "--limit", "ten"],
        ["project", "create", "P", "--width", "wide"],
        ["project", "list", "--no-such-option"],
    ],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_exit_2(args: list[str], data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main([*args, "--data-dir", str(data_dir)])

    assert exc_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
    assert not data_dir.exists(), "a usage error touches nothing"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["--help"])

    assert exc_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "project", "import", "shots", "takes", "status", "approve", "verify"):
        assert command in out


def test_data_dir_that_is_a_file(cli: Cli, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("hello", encoding="utf-8")

    result = cli("project", "list", data=not_a_folder)

    assert result.code == 1
    assert result.json["error"]["type"] == "StudioError"
    assert "is a file" in result.err
    assert not_a_folder.read_text(encoding="utf-8") == "hello"


# Choosing the data directory.


def test_data_dir_before_and_after_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(tmp_path / "either-side")

    assert main(["--data-dir", folder, "project", "create", "Before"]) == 0
    assert main(["project", "create", "After", "--data-dir", folder]) == 0
    assert main(["project", "--data-dir", folder, "create", "Middle"]) == 0
    capsys.readouterr()

    assert main(["--data-dir", folder, "project", "list", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["--json", "project", "list", "--data-dir", folder]) == 0
    second = json.loads(capsys.readouterr().out)

    assert [p["name"] for p in first["projects"]] == ["After", "Before", "Middle"]
    assert first == second
    assert (tmp_path / "either-side" / DATABASE_FILE).is_file()


def test_data_dir_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "from-env"))

    assert main(["project", "create", "Env"]) == 0

    assert (tmp_path / "from-env" / DATABASE_FILE).is_file()
    assert not (work / DEFAULT_DATA_DIR).exists()
    capsys.readouterr()
    assert main(["project", "list", "--json", "--data-dir", str(tmp_path / "from-env")]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["projects"]] == ["Env"]


def test_data_dir_option_beats_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "from-env"))

    assert main(["project", "create", "Opt", "--data-dir", str(tmp_path / "from-option")]) == 0

    assert (tmp_path / "from-option" / DATABASE_FILE).is_file()
    assert not (tmp_path / "from-env").exists()


def test_default_data_dir_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    assert main(["project", "create", "Here"]) == 0
    capsys.readouterr()

    assert (tmp_path / DEFAULT_DATA_DIR / DATABASE_FILE).is_file()
    assert main(["project", "list", "--json", "--data-dir", str(tmp_path / DEFAULT_DATA_DIR)]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["projects"]] == ["Here"]


# Output encodings.


def test_json_output_on_a_non_utf8_stdout(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="cp1252")
    monkeypatch.setattr(sys, "stdout", stdout)

    code = main(["project", "create", "Café 夜 🌙", "--json", "--data-dir", str(data_dir)])

    stdout.flush()
    assert code == 0
    assert json.loads(buffer.getvalue().decode("cp1252"))["project"]["name"] == "Café 夜 🌙"


def test_text_output_on_a_non_utf8_stdout_escapes_what_it_cannot_show(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    main(["project", "create", "夜", "--data-dir", str(data_dir)])
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["project", "list", "--data-dir", str(data_dir)]) == 0
    stdout.flush()
    assert "\\u591c" in buffer.getvalue().decode("ascii")


# The real script.


def test_app_py_end_to_end_with_a_unicode_name(tmp_path: Path) -> None:
    name = "Café 夜 🌙"
    data = tmp_path / "e2e-data"
    env = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, "CONTINUITY_AUTH")}
    env["PYTHONIOENCODING"] = "utf-8"

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "app.py", *args, "--json", "--data-dir", str(data)],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )

    created = run("project", "create", name)
    listed = run("project", "list")

    for done in (created, listed):
        stderr = done.stderr.decode("utf-8", errors="replace")
        assert done.returncode == 0, stderr
        assert "Traceback" not in stderr
    assert json.loads(created.stdout.decode("utf-8"))["project"]["name"] == name
    projects = json.loads(listed.stdout.decode("utf-8"))["projects"]
    assert [p["name"] for p in projects] == [name]
    assert name.encode("utf-8") in listed.stdout, "JSON output keeps non-ASCII text readable"


def test_fetch_weights_links_a_model_folder_and_refuses_what_it_cannot_use(
    cli: Cli, data_dir: Path, sana_wm_folder: Path, tmp_path: Path, hf_offline: Path
) -> None:
    before = cli("backends").json["backends"]
    assert not next(b for b in before if b["name"] == "sana-wm")["available"]

    linked = cli("fetch-weights", "sana-wm", sana_wm_folder)
    assert linked.code == 0, linked.err
    # A folder on this machine is linked; its refiner (inside it, in the tiny folder) is found there.
    assert linked.json == {"backend": "sana-wm", "folder": str(data_dir / "models" / "sana-wm"), "refiner": None}
    assert (data_dir / "models" / "sana-wm").resolve() == sana_wm_folder.resolve()
    after = next(b for b in cli("backends").json["backends"] if b["name"] == "sana-wm")
    assert after["available"] and after["source"] == str(data_dir / "models" / "sana-wm")
    assert after["refiner"]["installed"] and after["refiner"]["source"].endswith("refiner")

    not_a_model = tmp_path / "photos-folder"
    not_a_model.mkdir()
    cases = [
        (
            ("fetch-weights", "sana-vm", sana_wm_folder),
            "must be one of sana-wm, sana-wm-refiner, wan-i2v, wan-refiner, wan-vace",
        ),
        (("fetch-weights", "wan-i2v", not_a_model), "no model_index.json"),
        (("fetch-weights", "sana-wm", not_a_model), "no model_index.json"),
        (("fetch-weights", "wan-i2v", "not a repo"), "neither a folder on this machine nor a Hugging Face repo id"),
        # Offline here: the download fails with the hub's reason, and leaves no folder a backend would take.
        (("fetch-weights", "wan-i2v", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"), "could not download"),
    ]
    for args, message in cases:
        refused = cli(*args)
        assert refused.code == 1 and message in refused.json["error"]["message"], refused.out
    # A folder already linked for sana-wm is not replaced by another.
    other = tmp_path / "other-sana"
    shutil.copytree(sana_wm_folder, other)
    conflict = cli("fetch-weights", "sana-wm", other)
    assert conflict.code == 1 and conflict.json["error"]["type"] == "Conflict"
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == ["sana-wm"]
    assert (data_dir / "models" / "sana-wm").resolve() == sana_wm_folder.resolve()


def test_starting_the_studio_speaks_before_it_loads_anything_heavy(tmp_path: Path) -> None:
    """``python app.py`` prints its first line before the database, web and model libraries are imported (they
    take many seconds on a first start): the parser loads none of them, and the line comes first."""

    def loaded_by(module: str, heavy: set[str]) -> list[str]:
        """Which of ``heavy`` importing ``module`` loads, in a fresh interpreter."""
        found = f"sorted(set({sorted(heavy)!r}) & set(sys.modules))"
        probe = f"import json, sys\nimport {module}\nprint(json.dumps({found}))"
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    assert loaded_by("app.cli", {"sqlalchemy", "alembic", "gradio", "torch", "diffusers", "numpy", "cv2"}) == []
    # A command that only reads the database loads no model, video, image-analysis or web library either.
    libraries = {"gradio", "torch", "diffusers", "transformers", "numpy", "cv2", "dlib", "opentimelineio"}
    assert loaded_by("app.commands", libraries) == []

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "app.py", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stderr is not None
        first = server.stderr.readline()
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert first == f"Continuity: starting the studio on 127.0.0.1:{port}, loading libraries...\n"


def test_cut_shows_and_changes_the_cut_kept_with_each_shot(cli: Cli, imported: dict[str, Any]) -> None:
    changed = cli("cut", "Lighthouse", 2, "--in", 0.5, "--out", 2.5, "--crossfade", 0.25, "--card", "Later")
    assert changed.code == 0, changed.err
    shot_two = changed.json["shots"][1]
    assert shot_two == {"shot": 2, "title": "Coffee", "in": 0.5, "out": 2.5, "crossfade": 0.25, "card": "Later"}
    assert changed.json["shots"][0] == {
        "shot": 1,
        "title": "Arrival",
        "in": 0.0,
        "out": None,
        "crossfade": None,
        "card": "",
    }

    cli("cut", "Lighthouse", 2, "--to-end", "--export-crossfade", "--card", "")
    text = cli("cut", "Lighthouse", as_json=False).out.splitlines()
    assert text[1].split() == ["2", "0.5-end", "s", "into", "it:", "export's", "Coffee"]
    cli("cut", "Lighthouse", 3, "--crossfade", 0)
    assert "into it: cut" in cli("cut", "Lighthouse", as_json=False).out.splitlines()[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2, "--in", 3, "--out", 1), "shot 2: out point: 1 s is not after the in point (3 s)"),
        ((2, "--crossfade", "nan"), "crossfade: must be a number of seconds, got nan"),
        ((2, "--crossfade", -1), "crossfade: must be more than 0 seconds"),
        ((9, "--in", 1), "has no shot 9"),
        ((2,), "say what to change"),
        (("--in", 1), "name the shot to change"),
    ],
)
def test_cut_refuses_bad_values_and_changes_nothing(
    cli: Cli, imported: dict[str, Any], args: tuple, message: str
) -> None:
    before = cli("cut", "Lighthouse").json
    refused = cli("cut", "Lighthouse", *args, as_json=False)
    assert refused.code != 0 and message in refused.err, refused.err
    assert cli("cut", "Lighthouse").json == before
