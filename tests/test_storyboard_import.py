"""Importing a storyboard file (JSON or CSV) into the studio: what a good file creates, and that a bad one
changes nothing at all (no project, no shot, no character, no file in the media store) and says where it is wrong.

Everything runs against the real SQLite file of the ``studio`` fixture, with real photographs as images.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import shutil
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from projects.cast import add_character, list_characters
from projects.errors import Conflict, InvalidImage, InvalidInput, StudioError
from projects.project import create_project, list_projects
from projects.storyboard import add_shot, list_shots
from projects.storyboard_file import MAX_STORYBOARD_BYTES, import_storyboard, read_storyboard
from projects.studio import Studio
from projects.validation import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, MAX_REFERENCES
from storage import media as media_rows

SETTINGS = {"width": 832, "height": 480, "fps": 24}
EXISTING = "The Lighthouse"

BASE: dict[str, Any] = {
    "project": EXISTING,
    "settings": SETTINGS,
    "characters": [
        {
            "name": "Mara",
            "description": "a red-haired keeper",
            "references": ["refs/mara_front.png", "refs/mara_side.jpg"],
        },
        {"name": "Jonas", "description": "the ferryman", "references": ["refs/jonas.webp"]},
    ],
    "shots": [
        {
            "scene": "1",
            "title": "Arrival",
            "prompt": "Mara climbs the stairs",
            "characters": ["Mara"],
            "duration": 4.0,
            "camera": "Dolly-In",
            "keyframe": "refs/stairs.png",
            "continue_from_previous": False,
        },
        {
            "scene": 1,
            "title": "Meeting",
            "prompt": "Mara meets Jonas by the lamp",
            "characters": "Mara, Jonas",
            "duration": "2.5",
            "camera": "W-32, WL-16",
            "keyframe_character": "Mara",
            "continue_from_previous": True,
        },
        {"scene": "2", "title": "Night", "prompt": "The sea at night", "duration": 3},
    ],
}


def storyboard(project: str = EXISTING) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["project"] = project
    return data


@pytest.fixture
def board(tmp_path: Path, photos: dict[str, Path]) -> Path:
    """A storyboard folder: real photos under refs/, a text file posing as a PNG; a photo just outside it."""
    folder = tmp_path / "board"
    refs = folder / "refs"
    refs.mkdir(parents=True)
    shutil.copy(photos["astronaut"], refs / "mara_front.png")
    shutil.copy(photos["chelsea"], refs / "mara_side.jpg")
    shutil.copy(photos["rocket"], refs / "jonas.webp")
    shutil.copy(photos["coffee"], refs / "stairs.png")
    shutil.copy(photos["astronaut"], refs / "mara_front_copy.png")
    (refs / "fake.png").write_text("a red-haired keeper, drawn in words\n")
    shutil.copy(photos["coffee"], tmp_path / "secret.png")
    (refs / "link.png").symlink_to(tmp_path / "secret.png")
    return folder


def write_json(folder: Path, data: Any, name: str = "board.json") -> Path:
    path = folder / name
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


def write_csv(folder: Path, text: str, name: str = "scenes.csv", *, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def media_files(studio: Studio) -> set[Path]:
    return {path for path in studio.media.root.glob("??/??/*") if path.is_file()}


def snapshot(studio: Studio) -> tuple[Any, ...]:
    """Everything an import could change: projects (with counts), their casts and shots, the media files."""
    projects = list_projects(studio)
    detail = {p.id: (list_characters(studio, p.id), list_shots(studio, p.id, limit=500).items) for p in projects}
    return projects, detail, media_files(studio)


def make_existing(studio: Studio, board: Path) -> tuple[Any, ...]:
    """A project with the storyboard's settings, one character (whose reference is also Mara's) and one shot.

    Returns the studio's snapshot with it.
    """
    keeper = {"name": "Keeper", "references": ["refs/mara_front.png"]}
    shot = {"prompt": "The lamp turns", "duration": 2, "characters": ["Keeper"]}
    data = {"project": EXISTING, "settings": SETTINGS, "characters": [keeper], "shots": [shot]}
    import_storyboard(studio, write_json(board, data, "existing.json"))  # one transaction: quicker than three
    state = snapshot(studio)
    assert [(p.name, p.character_count, p.shot_count) for p in state[0]] == [(EXISTING, 1, 1)]
    assert len(state[2]) == 1
    return state


def assert_imports_nothing(
    studio: Studio,
    path: Path,
    error: type[StudioError],
    fragments: list[str],
    project: str | None = None,
    before: tuple[Any, ...] | None = None,
) -> None:
    """Importing ``path`` fails with ``error`` naming every fragment, and the studio is exactly as ``before``."""
    before = before or snapshot(studio)
    files_before = len(before[2])
    with pytest.raises(StudioError) as caught:
        import_storyboard(studio, path, project=project)
    message = str(caught.value)
    assert type(caught.value) is error, message
    for fragment in fragments:
        assert fragment in message
    after = snapshot(studio)
    assert after == before
    assert len(after[2]) == files_before
    with studio.read() as session:
        assert media_rows.verify(session, studio.media) == []


# A good JSON storyboard.


def test_full_json_storyboard(studio, board):
    result = import_storyboard(studio, write_json(board, storyboard()))

    assert result.created_project is True
    assert (result.characters_added, result.shots_added, result.references_added) == (2, 3, 3)
    [project] = list_projects(studio)
    assert project.name == EXISTING
    assert (project.width, project.height, project.fps) == (832, 480, 24)
    assert (project.character_count, project.shot_count) == (2, 3)
    assert result.project.id == project.id

    mara, jonas = list_characters(studio, EXISTING)
    assert (mara.name, mara.description) == ("Mara", "a red-haired keeper")
    assert (jonas.name, jonas.description) == ("Jonas", "the ferryman")
    expected = {"Mara": ["mara_front.png", "mara_side.jpg"], "Jonas": ["jonas.webp"]}
    for character in (mara, jonas):
        assert [ref.original_name for ref in character.references] == expected[character.name]
        assert [ref.position for ref in character.references] == list(range(1, len(expected[character.name]) + 1))
        for ref, name in zip(character.references, expected[character.name], strict=True):
            source = board / "refs" / name
            assert ref.sha256 == sha256(source)
            assert ref.extension == {".png": "png", ".jpg": "jpg", ".webp": "webp"}[source.suffix]
            assert ref.path == studio.media.path_for(ref.sha256, ref.extension)
            assert ref.path.read_bytes() == source.read_bytes()
            assert max(ref.width, ref.height) == 128

    page = list_shots(studio, EXISTING)
    assert page.total == 3
    first, second, third = page.items
    assert [s.number for s in page.items] == [1, 2, 3]
    assert [(s.scene, s.title) for s in page.items] == [("1", "Arrival"), ("1", "Meeting"), ("2", "Night")]
    assert [s.prompt for s in page.items] == [
        "Mara climbs the stairs",
        "Mara meets Jonas by the lamp",
        "The sea at night",
    ]
    assert [s.duration for s in page.items] == [4.0, 2.5, 3.0]
    assert [s.characters for s in page.items] == [("Mara",), ("Mara", "Jonas"), ()]
    assert [s.camera for s in page.items] == ["dolly-in", "w-32,lw-16", "static"]
    assert [s.continue_from_previous for s in page.items] == [False, True, False]

    stairs = board / "refs" / "stairs.png"
    assert first.keyframe.source == "image"
    assert first.keyframe.sha256 == sha256(stairs)
    assert first.keyframe.path == studio.media.path_for(sha256(stairs), "png")
    assert first.keyframe.path.read_bytes() == stairs.read_bytes()
    assert (second.keyframe.source, second.keyframe.character, second.keyframe.sha256) == ("character", "Mara", None)
    assert (third.keyframe.source, third.keyframe.sha256, third.keyframe.character) == ("none", None, None)

    assert len(media_files(studio)) == 4  # three references and one keyframe
    with studio.read() as session:
        assert media_rows.verify(session, studio.media) == []


def test_read_storyboard_checks_without_touching_the_studio(studio, board):
    plan = read_storyboard(write_json(board, storyboard()))
    assert plan.project == EXISTING
    assert plan.settings == SETTINGS
    assert [c.name for c in plan.characters] == ["Mara", "Jonas"]
    assert [image.extension for image in plan.characters[0].references] == ["png", "jpg"]
    assert [s.camera for s in plan.shots] == ["dolly-in", "w-32,lw-16", "static"]
    assert plan.shots[0].keyframe is not None
    assert plan.shots[0].keyframe.path == (board / "refs" / "stairs.png").resolve()
    assert list_projects(studio) == []
    assert media_files(studio) == set()


def test_project_option_overrides_the_name_in_the_file(studio, board):
    result = import_storyboard(studio, write_json(board, storyboard()), project="Director's Cut")
    assert [p.name for p in list_projects(studio)] == ["Director's Cut"]
    assert result.project.name == "Director's Cut"


def test_json_without_a_project_name_is_named_after_the_file(studio, board):
    data = storyboard()
    del data["project"], data["settings"], data["characters"]
    for shot in data["shots"]:
        shot.pop("characters", None)
        shot.pop("keyframe_character", None)
    import_storyboard(studio, write_json(board, data, "Harbour Scenes.json"))
    [project] = list_projects(studio)
    assert project.name == "Harbour Scenes"
    assert (project.width, project.height, project.fps) == (640, 384, 16)  # the studio's defaults
    assert project.shot_count == 3


def test_json_into_an_existing_project_appends_and_may_name_its_characters(studio, board):
    make_existing(studio, board)
    data = storyboard()
    data["shots"][2]["characters"] = ["keeper", "Jonas"]  # an existing character, named case-insensitively

    result = import_storyboard(studio, write_json(board, data))

    assert result.created_project is False
    assert (result.characters_added, result.shots_added) == (2, 3)
    shots = list_shots(studio, EXISTING).items
    assert [s.prompt for s in shots] == [
        "The lamp turns",
        "Mara climbs the stairs",
        "Mara meets Jonas by the lamp",
        "The sea at night",
    ]
    assert [s.number for s in shots] == [1, 2, 3, 4]
    assert shots[3].characters == ("Keeper", "Jonas")
    assert [c.name for c in list_characters(studio, EXISTING)] == ["Keeper", "Mara", "Jonas"]
    # Mara's front reference is the Keeper's image: stored once, used twice.
    keeper, mara, _ = list_characters(studio, EXISTING)
    assert keeper.references[0].path == mara.references[0].path
    assert len(media_files(studio)) == 4


# CSV storyboards.


def test_csv_with_only_the_required_columns(studio, board):
    path = write_csv(board, "prompt,duration\nThe harbour at dawn,4\nGulls over the pier,2.5\n", "harbour.csv")
    result = import_storyboard(studio, path)
    assert result.created_project is True
    assert (result.characters_added, result.shots_added, result.references_added) == (0, 2, 0)
    [project] = list_projects(studio)
    assert (project.name, project.width, project.height, project.fps) == ("harbour", 640, 384, 16)
    shots = list_shots(studio, "harbour").items
    assert [(s.number, s.prompt, s.duration) for s in shots] == [
        (1, "The harbour at dawn", 4.0),
        (2, "Gulls over the pier", 2.5),
    ]
    for shot in shots:
        assert (shot.scene, shot.title, shot.camera, shot.characters) == ("", "", "static", ())
        assert (shot.keyframe.source, shot.continue_from_previous) == ("none", False)


def test_csv_project_option_names_the_new_project(studio, board):
    path = write_csv(board, "prompt,duration\nThe harbour at dawn,4\n", "harbour.csv")
    import_storyboard(studio, path, project="Harbour, Take Two")
    assert [p.name for p in list_projects(studio)] == ["Harbour, Take Two"]
    assert list_shots(studio, "Harbour, Take Two").total == 1


def test_csv_all_columns_written_by_the_csv_module(studio, board):
    rows = [
        [
            "scene",
            "title",
            "prompt",
            "characters",
            "duration",
            "camera",
            "keyframe",
            "keyframe_character",
            "continue_from_previous",
        ],
        ["1", "Arrival", 'Mara says "hold on", then\nclimbs', "", "4", "Dolly-In", "refs/stairs.png", "", "no"],
        ["1", "Lamp", "The lamp, turning", "", "1.5", "pan-left", "", "", "TRUE"],
    ]
    path = board / "all.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    import_storyboard(studio, path)
    shots = list_shots(studio, "all").items
    assert [s.prompt for s in shots] == ['Mara says "hold on", then\nclimbs', "The lamp, turning"]
    assert [s.camera for s in shots] == ["dolly-in", "pan-left"]
    assert [s.continue_from_previous for s in shots] == [False, True]
    assert shots[0].keyframe.sha256 == sha256(board / "refs" / "stairs.png")
    assert shots[1].keyframe.source == "none"


@pytest.mark.parametrize(
    ("newline", "blank"),
    [
        pytest.param("\r\n", ";;;;;;;;", id="excel-crlf-empty-cells"),
        pytest.param("\n", ";;;;;;;;", id="lf-empty-cells"),
        pytest.param("\n", "", id="lf-empty-line"),
        pytest.param("\r\n", "", id="crlf-empty-line"),
    ],
)
def test_excel_csv_bom_semicolons_blank_lines_into_an_existing_project(studio, board, newline, blank):
    import_storyboard(studio, write_json(board, storyboard()))
    before = list_shots(studio, EXISTING).items
    lines = [
        "Scene;Title;Prompt;Characters;Duration;Camera;Keyframe;Keyframe_Character;Continue_From_Previous",
        "3;Storm;Waves hit the rocks, hard;Mara,Jonas;2.5;pan-left;;Jonas;yes",
        blank,
        "3;Calm;The lamp, still;;1;;refs/mara_side.jpg;;no",
        blank,
    ]
    path = write_csv(board, newline.join(lines) + newline, "excel.csv", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")

    result = import_storyboard(studio, path, project="the lighthouse")  # case-insensitive match

    assert result.created_project is False
    assert (result.shots_added, result.characters_added) == (2, 0)
    assert [p.name for p in list_projects(studio)] == [EXISTING]
    shots = list_shots(studio, EXISTING).items
    assert shots[:3] == before
    storm, calm = shots[3:]
    assert (storm.number, storm.scene, storm.title, storm.prompt) == (4, "3", "Storm", "Waves hit the rocks, hard")
    assert (storm.characters, storm.duration, storm.camera) == (("Mara", "Jonas"), 2.5, "pan-left")
    assert (storm.keyframe.source, storm.keyframe.character, storm.continue_from_previous) == (
        "character",
        "Jonas",
        True,
    )
    assert (calm.number, calm.title, calm.characters, calm.camera) == (5, "Calm", (), "static")
    assert calm.keyframe.sha256 == sha256(board / "refs" / "mara_side.jpg")
    assert calm.continue_from_previous is False


def test_csv_into_a_project_made_by_hand(studio, board):
    create_project(studio, "Harbour", fps=12)
    add_character(studio, "Harbour", "Ferryman", references=[board / "refs" / "jonas.webp"])
    add_shot(studio, "Harbour", prompt="Fog over the water", duration=3)
    path = write_csv(board, "prompt,duration,characters,keyframe_character\nThe ferry docks,2,FERRYMAN,ferryman\n")

    result = import_storyboard(studio, path, project="Harbour")

    assert (result.created_project, result.shots_added, result.project.fps) == (False, 1, 12)
    shots = list_shots(studio, "Harbour").items
    assert [(s.number, s.prompt) for s in shots] == [(1, "Fog over the water"), (2, "The ferry docks")]
    assert shots[1].characters == ("Ferryman",)
    assert (shots[1].keyframe.source, shots[1].keyframe.character) == ("character", "Ferryman")
    assert [p.name for p in list_projects(studio)] == ["Harbour"]


def test_csv_tab_delimited(studio, board):
    path = write_csv(board, "prompt\tduration\ttitle\nMara waits, then leaves\t3\tExit\n", "tabs.csv")
    import_storyboard(studio, path)
    [shot] = list_shots(studio, "tabs").items
    assert (shot.prompt, shot.duration, shot.title) == ("Mara waits, then leaves", 3.0, "Exit")


# Names in any language.

PROJECT = "Le Phare — 灯台 🌊"
ZOE = "Zoë Ōkubo"
LI = "李小龍 🐉"


def test_unicode_names_round_trip_exactly(studio, board):
    data = storyboard(PROJECT)
    data["characters"][0]["name"] = ZOE
    data["characters"][1]["name"] = LI
    data["shots"][0]["characters"] = [ZOE]
    data["shots"][0]["title"] = "Ankunft · 到着 🚢"
    data["shots"][1]["characters"] = [LI, ZOE]
    data["shots"][1]["keyframe_character"] = LI
    data["shots"][1]["prompt"] = "Zoë und 李 sehen das Meer 🌊"
    import_storyboard(studio, write_json(board, data, "phare.json"))

    assert [p.name for p in list_projects(studio)] == [PROJECT]
    assert [c.name for c in list_characters(studio, PROJECT)] == [ZOE, LI]
    shots = list_shots(studio, PROJECT).items
    assert shots[0].title == "Ankunft · 到着 🚢"
    assert shots[0].characters == (ZOE,)
    assert set(shots[1].characters) == {LI, ZOE}  # listed in cast order today, not in the order given
    assert len(shots[1].characters) == 2
    assert shots[1].keyframe.character == LI
    assert shots[1].prompt == "Zoë und 李 sehen das Meer 🌊"


def test_unicode_csv_named_after_its_file(studio, board):
    path = write_csv(board, "title,prompt,duration\n到着 🚢,Zoë sieht das Meer,4\n", "灯台 🌊.csv")
    import_storyboard(studio, path)
    assert [p.name for p in list_projects(studio)] == ["灯台 🌊"]
    [shot] = list_shots(studio, "灯台 🌊").items
    assert (shot.title, shot.prompt) == ("到着 🚢", "Zoë sieht das Meer")


def test_decomposed_names_are_stored_composed_and_still_match(studio, board):
    decomposed = unicodedata.normalize("NFD", ZOE)
    assert decomposed != ZOE
    data = storyboard()
    data["characters"][0]["name"] = decomposed
    data["shots"][0]["characters"] = [ZOE]  # composed here, decomposed in the cast: the same character
    data["shots"][1]["characters"] = [decomposed]
    data["shots"][1]["keyframe_character"] = decomposed
    import_storyboard(studio, write_json(board, data))
    assert list_characters(studio, EXISTING)[0].name == ZOE
    shots = list_shots(studio, EXISTING).items
    assert shots[0].characters == shots[1].characters == (ZOE,)


# Bad storyboards import nothing.


def put(*keys: str | int, value: Any) -> Callable[[dict[str, Any], Path], Any]:
    """A change to the good storyboard: set ``value`` (or ``value(folder)``) at ``keys``."""

    def mutate(data: dict[str, Any], folder: Path) -> Any:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(folder) if callable(value) else value
        return data

    return mutate


def drop(*keys: str | int) -> Callable[[dict[str, Any], Path], Any]:
    def mutate(data: dict[str, Any], folder: Path) -> Any:
        target = data
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
        return data

    return mutate


def last_shot(**fields: Any) -> Callable[[dict[str, Any], Path], Any]:
    """A fourth shot after three good ones that store a keyframe (and characters with references)."""

    def mutate(data: dict[str, Any], folder: Path) -> Any:
        data["shots"].append(
            {"prompt": "Someone at the door", "duration": 2, "keyframe": "refs/mara_side.jpg", **fields}
        )
        return data

    return mutate


def case(mutate: Any, *fragments: str, id: str, error: type[StudioError] = InvalidInput, marks: Any = ()) -> Any:
    """A bad storyboard: how to spoil the good one, the error it must raise, and what its message must name."""
    return pytest.param(mutate, error, list(fragments), id=id, marks=marks)


JONAS_REFS = ("characters", 1, "references")
OUTSIDE = "outside the storyboard's folder"
BAD_JSON = [
    case(lambda d, f: '{"project": "The Lighthouse", "shots": [', "board.json", "not valid JSON", id="not-json"),
    case(lambda d, f: [d], "board.json", "JSON object", id="a-list"),
    case(lambda d, f: "[]", "board.json", "JSON object", id="empty-list"),
    case(put("soundtrack", value="waves.mp3"), "storyboard", "unknown field", "soundtrack", id="top-field"),
    case(put("shots", 1, "lens", value="35mm"), "shot 2", "unknown field", "lens", id="shot-field"),
    case(put("settings", "bitrate", value=8), "settings", "unknown field", "bitrate", id="settings-field"),
    case(put("characters", 1, "age", value=40), "character 2", "unknown field", "age", id="character-field"),
    case(drop("shots"), "shots", "required", id="no-shots"),
    case(put("shots", 2, value="The sea at night"), "shot 3", "object", id="shot-not-object"),
    # Files: missing, outside the storyboard's folder, absolute, not images, listed twice.
    case(
        put(*JONAS_REFS, value=["refs/jonas.webp", "refs/nope.png"]),
        "character 2 (Jonas).references[1]",
        "not found",
        "nope.png",
        id="missing-reference",
    ),
    case(put(*JONAS_REFS, value=["../secret.png"]), "character 2 (Jonas).references[0]", OUTSIDE, id="dotdot"),
    case(put(*JONAS_REFS, value=["refs/../../secret.png"]), "character 2 (Jonas).references[0]", OUTSIDE, id="deep"),
    case(put(*JONAS_REFS, value=["refs/link.png"]), "character 2 (Jonas).references[0]", OUTSIDE, id="symlink-out"),
    case(
        put(*JONAS_REFS, value=lambda f: [str(f / "refs" / "jonas.webp")]),
        "character 2 (Jonas).references[0]",
        "absolute path",
        id="absolute-reference",
    ),
    case(
        put(*JONAS_REFS, value=["C:\\Users\\mara\\jonas.webp"]),
        "character 2 (Jonas).references[0]",
        "absolute path",
        id="windows-absolute-reference",
    ),
    case(
        put(*JONAS_REFS, value=["refs/fake.png"]),
        "character 2 (Jonas).references[0]",
        "fake.png",
        "not an image",
        id="text-as-png-reference",
        error=InvalidImage,
    ),
    case(
        put("characters", 0, "references", value=["refs/mara_front.png", "refs/../refs/mara_front.png"]),
        "character 1 (Mara).references",
        "twice",
        id="same-reference-twice",
    ),
    case(
        put(
            "characters",
            0,
            "references",
            value=["refs/mara_side.jpg", "refs/mara_front.png", "refs/mara_front_copy.png"],
        ),
        "character 1 (Mara)",
        "already has this image",
        id="same-reference-bytes",
        error=Conflict,
    ),
    case(put("shots", 2, "keyframe", value="../secret.png"), "shot 3.keyframe", OUTSIDE, id="dotdot-keyframe"),
    case(put("shots", 2, "keyframe", value="/etc/passwd"), "shot 3.keyframe", "absolute path", id="absolute-keyframe"),
    case(
        put("shots", 2, "keyframe", value="refs/fake.png"),
        "shot 3.keyframe",
        "fake.png",
        id="text-as-png-keyframe",
        error=InvalidImage,
    ),
    case(
        put("shots", 0, "keyframe_character", value="Mara"), "shot 1.keyframe", "not both", id="keyframe-and-character"
    ),
    # The cast.
    case(put("characters", 1, "name", value="Mara"), "character 2 (Mara).name", "used by character 1", id="duplicate"),
    case(put("characters", 1, "name", value="MARA"), "character 2 (MARA).name", "used by character 1", id="dup-case"),
    case(
        last_shot(characters=["Mara", "Nobody"]),
        "shot 4.characters",
        "unknown character 'Nobody'",
        id="unknown-character-last-shot",
    ),
    case(
        last_shot(keyframe=None, keyframe_character="Nobody"),
        "shot 4.keyframe_character",
        "unknown character 'Nobody'",
        id="unknown-keyframe-character-last-shot",
    ),
    case(last_shot(characters=["Jonas", "jonas"]), "shot 4.characters", "twice", id="character-twice-last-shot"),
    case(put("characters", 1, "name", value="M" * 10_000), "character 2.name", "10000 characters", id="name-10000"),
    case(put("characters", 1, "name", value="Mara/Jonas"), "character 2.name", "'/'", id="name-slash"),
    # The limits are the cast's own: a file cannot make a character the Cast tab would refuse.
    case(
        put("characters", 1, "description", value="d" * (MAX_DESCRIPTION_LENGTH + 1)),
        "character 2 (Jonas).description",
        f"the limit is {MAX_DESCRIPTION_LENGTH}",
        id="description-too-long",
    ),
    case(
        put("characters", 1, "references", value=["refs/jonas.webp"] * (MAX_REFERENCES + 1)),
        "character 2 (Jonas).references",
        str(MAX_REFERENCES),
        id="references-too-many",
    ),
    case(put("shots", 0, "characters", value=["M" * (MAX_NAME_LENGTH + 1)]), "shot 1.characters[0]", id="cast-name"),
    case(put("characters", 1, "name", value=".."), "character 2.name", "'..'", id="name-dotdot"),
    case(put("characters", 1, "name", value="Jo\x00nas"), "character 2.name", "control", id="name-nul"),
    case(put("characters", 1, "name", value="   "), "character 2.name", "empty", id="name-spaces"),
    case(put("characters", 1, "name", value=7), "character 2.name", "text", id="name-number"),
    case(put("project", value="Act 1/2"), "project", "'/'", id="project-slash"),
    case(put("project", value="The..Lighthouse"), "project", "'..'", id="project-dotdot"),
    case(put("project", value="The\x00Lighthouse"), "project", "control", id="project-nul"),
    case(put("project", value=" \t "), "project", "empty", id="project-spaces"),
    # Shot fields.
    case(put("shots", 2, "duration", value=0), "shot 3.duration", "more than 0", id="duration-0"),
    case(put("shots", 2, "duration", value=-1), "shot 3.duration", "more than 0", id="duration-negative"),
    case(put("shots", 2, "duration", value=601), "shot 3.duration", "601", "10 minutes", id="duration-601"),
    case(put("shots", 2, "duration", value="abc"), "shot 3.duration", "'abc'", id="duration-text"),
    case(put("shots", 2, "duration", value=True), "shot 3.duration", id="duration-bool"),
    case(put("shots", 2, "duration", value=None), "shot 3.duration", id="duration-null"),
    case(drop("shots", 2, "duration"), "shot 3.duration", "required", id="duration-missing"),
    case(put("shots", 1, "prompt", value=""), "shot 2.prompt", "empty", id="prompt-empty"),
    case(put("shots", 1, "prompt", value="   \n "), "shot 2.prompt", "empty", id="prompt-blank"),
    case(drop("shots", 1, "prompt"), "shot 2.prompt", "required", id="prompt-missing"),
    case(put("shots", 2, "camera", value="fly-32"), "shot 3.camera", "'fly-32'", id="camera-fly-32"),
    case(put("shots", 2, "camera", value="w-0"), "shot 3.camera", "'w-0'", id="camera-w-0"),
    case(put("shots", 2, "camera", value=12), "shot 3.camera", id="camera-number"),
    case(put("shots", 0, "characters", value={"Mara": 1}), "shot 1.characters", id="characters-object"),
    case(put("shots", 1, "continue_from_previous", value="maybe"), "shot 2.continue_from_previous", id="flag-maybe"),
    # Settings.
    case(put("settings", "fps", value=0), "settings.fps", "between 1 and 120", id="fps-0"),
    case(put("settings", "fps", value=121), "settings.fps", "between 1 and 120", id="fps-121"),
    case(put("settings", "fps", value=23.976), "settings.fps", "whole number", id="fps-fraction"),
    case(put("settings", "width", value=650), "settings.width", "multiple of 8", "650", id="width-650"),
    case(put("settings", "height", value=32), "settings.height", "between 64", id="height-32"),
    case(put("settings", value=[640, 384]), "settings", "object", id="settings-list"),
]


@pytest.mark.parametrize(("mutate", "error", "fragments"), BAD_JSON)
def test_bad_json_storyboard_changes_nothing(studio, board, mutate, error, fragments):
    # The same bad file, imported as a new project and then into an existing one: neither import leaves a trace.
    before = make_existing(studio, board)
    for project in ("A New Film", EXISTING):
        path = write_json(board, mutate(storyboard(project), board))
        assert_imports_nothing(studio, path, error, fragments, before=before)


@pytest.mark.parametrize(
    ("mutate", "error", "fragments"),
    [
        case(put("settings", "fps", value=25), "settings.fps", "24", "25", id="fps-differs"),
        case(put("settings", "width", value=640), "settings.width", "832", "640", id="width-differs"),
        case(
            put("characters", 1, "name", value="keeper"),
            "character 2 (keeper)",
            "already has a character named 'Keeper'",
            id="character-exists",
            error=Conflict,
        ),
    ],
)
def test_bad_json_for_the_existing_project_changes_nothing(studio, board, mutate, error, fragments):
    make_existing(studio, board)
    path = write_json(board, mutate(storyboard(EXISTING), board))
    assert_imports_nothing(studio, path, error, fragments)


def test_character_conflict_after_stored_references_leaves_no_file(studio, board):
    # Mara's side view is new to the store; it is copied in before the clash on the second character is found.
    make_existing(studio, board)
    data = storyboard()
    data["characters"][1]["name"] = "KEEPER"
    side = sha256(board / "refs" / "mara_side.jpg")
    assert_imports_nothing(studio, write_json(board, data), Conflict, ["character 2 (KEEPER)"])
    assert not studio.media.path_for(side, "jpg").exists()
    assert studio.media.path_for(sha256(board / "refs" / "mara_front.png"), "png").exists()  # the Keeper's


BAD_CSV = [
    case("prompt,scene\nA storm,1\n", "scenes.csv", "missing column(s) duration", id="no-duration-column"),
    case("scene,duration\n1,4\n", "scenes.csv", "missing column(s) prompt", id="no-prompt-column"),
    case("prompt,duration,lens\nA storm,4,35mm\n", "scenes.csv", "unknown column(s) lens", id="unknown-column"),
    case("prompt,duration,Prompt\nA,4,B\n", "scenes.csv", "column twice", id="column-twice"),
    case("prompt,duration\nA storm,4\nThe sea,3,extra\n", "shot 2", "more cells", "line 3", id="more-cells"),
    case("prompt;duration\nA storm;4\nThe sea;3;x;y\n", "shot 2", "more cells", id="more-cells-;"),
    case("prompt,duration\nA storm,4\nThe sea,abc\n", "shot 2 (line 3).duration", "'abc'", id="duration-text"),
    case("prompt,duration\nA storm,4\nThe sea,0\n", "shot 2 (line 3).duration", id="duration-0"),
    case("prompt,duration\nA storm,4\nThe sea,601\n", "shot 2 (line 3).duration", id="duration-601"),
    case("prompt,duration\nA storm,4\nThe sea,\n", "shot 2 (line 3).duration", id="duration-empty"),
    case("prompt,duration\nA storm,4\n,3\n", "shot 2 (line 3).prompt", "empty", id="prompt-empty"),
    case("prompt,duration,camera\nA storm,4,static\nThe sea,3,fly-32\n", "shot 2 (line 3).camera", id="camera"),
    case(
        "prompt,duration,keyframe\nA storm,4,refs/stairs.png\nThe sea,3,../secret.png\n",
        "shot 2 (line 3).keyframe",
        OUTSIDE,
        id="keyframe-outside",
    ),
    case(
        "prompt,duration,keyframe\nA storm,4,refs/stairs.png\nThe sea,3,refs/fake.png\n",
        "shot 2 (line 3).keyframe",
        "fake.png",
        id="keyframe-text-as-png",
        error=InvalidImage,
    ),
    case(
        "prompt,duration,characters,keyframe\nA storm,4,,refs/stairs.png\nThe sea,3,Nobody,refs/mara_side.jpg\n",
        "shot 2.characters",
        "unknown character 'Nobody'",
        id="unknown-character-last-row",
    ),
    case("prompt,duration\n", "scenes.csv", "no shots", id="header-only"),
    case("prompt,duration\n,\n , \n", "scenes.csv", "no shots", id="only-blank-rows"),
    case("", "scenes.csv", "empty", id="empty-file"),
]


@pytest.mark.parametrize(("text", "error", "fragments"), BAD_CSV)
def test_bad_csv_storyboard_changes_nothing(studio, board, text, error, fragments):
    # As a new project named after the file, then appended to an existing project.
    before = make_existing(studio, board)
    path = write_csv(board, text)
    for project in (None, EXISTING):
        assert_imports_nothing(studio, path, error, fragments, project=project, before=before)


@pytest.mark.parametrize("name", ["Act 1/2", "..", "Act\x00One", "   ", "x" * 10_000, "C:\\films"])
def test_bad_project_option_changes_nothing(studio, board, name):
    make_existing(studio, board)
    path = write_json(board, storyboard("A New Film"))
    assert_imports_nothing(studio, path, InvalidInput, ["project name"], project=name)


def test_csv_file_stem_that_is_not_a_valid_name(studio, board):
    make_existing(studio, board)
    path = write_csv(board, "prompt,duration\nA storm,4\n", "act..one.csv")
    assert_imports_nothing(studio, path, InvalidInput, ["project name", "'..'"])


# read_storyboard's own checks on the file.


def test_read_storyboard_rejects_a_text_file(board):
    path = board / "board.txt"
    path.write_text(json.dumps(storyboard()), encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"board\.txt: a storyboard is a \.json or \.csv file"):
        read_storyboard(path)


def test_read_storyboard_size_limit(studio, board):
    small = json.dumps({"shots": [{"prompt": "A storm", "duration": 4}]})
    exact = board / "exact.json"
    exact.write_text(small + " " * (MAX_STORYBOARD_BYTES - len(small)), encoding="utf-8")
    assert exact.stat().st_size == MAX_STORYBOARD_BYTES
    assert len(read_storyboard(exact).shots) == 1

    big = board / "big.json"
    with big.open("wb") as f:
        f.write(small.encode())
        f.truncate(MAX_STORYBOARD_BYTES + 1)  # sparse
    with pytest.raises(InvalidInput, match=r"big\.json is 10\.0 MiB; a storyboard may be at most 10 MiB"):
        read_storyboard(big)
    make_existing(studio, board)
    assert_imports_nothing(studio, big, InvalidInput, ["big.json", "at most 10 MiB"])


def test_read_storyboard_rejects_a_missing_file_and_non_utf8(board):
    with pytest.raises(InvalidInput, match="storyboard file not found"):
        read_storyboard(board / "nope.json")
    latin1 = write_csv(board, "prompt,duration\nZoë,4\n", "latin1.csv", encoding="latin-1")
    with pytest.raises(InvalidInput, match=r"latin1\.csv is not UTF-8"):
        read_storyboard(latin1)


# Known bugs, kept visible.


def test_csv_cell_in_single_quotes_next_to_a_double_quoted_cell(studio, board):
    path = board / "dialogue.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [["title", "prompt", "duration"], ["Calm", "'It is over'", "3"], ["Storm", "Hold on, she says", "4"]]
        )
    import_storyboard(studio, path)
    assert [s.prompt for s in list_shots(studio, "dialogue").items] == ["'It is over'", "Hold on, she says"]


def test_more_cells_error_names_the_shot_as_other_errors_do(board):
    path = write_csv(board, "prompt,duration\nA storm,4\n,\nThe sea,3,extra\n")
    with pytest.raises(InvalidInput) as caught:
        read_storyboard(path)
    assert str(caught.value).startswith("shot 2")


# Two imports of one storyboard at once.

IMPORT_ALONGSIDE = r"""
import sys, time
from pathlib import Path

from projects import storyboard_file

data, board, mine, theirs = sys.argv[1:5]
read_storyboard = storyboard_file.read_storyboard


def read_alongside(path):
    # Both imports have read and checked the file before either writes, as when two are started together.
    plan = read_storyboard(path)
    Path(mine).touch()
    deadline = time.monotonic() + 60
    while not Path(theirs).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return plan


storyboard_file.read_storyboard = read_alongside
from app.cli import main

sys.exit(main(["import", board, "--data-dir", data]))
"""


def shots_only(project: str) -> dict[str, Any]:
    """The good storyboard without its cast: a second import of it clashes on nothing but the shots."""
    data = storyboard(project)
    del data["characters"]
    for shot in data["shots"]:
        shot.pop("characters", None)
        shot.pop("keyframe_character", None)
    return data


def test_two_imports_of_one_storyboard_at_once_make_one_project(studio, board, tmp_path):
    import os
    import subprocess
    import sys

    path = write_json(board, shots_only("Racing"))
    root = Path(__file__).resolve().parent.parent
    flags = [tmp_path / "first", tmp_path / "second"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", IMPORT_ALONGSIDE, str(studio.data_dir), str(path), str(mine), str(theirs)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mine, theirs in (flags, flags[::-1])
    ]
    outcomes = sorted((process.wait(timeout=120), *process.communicate()) for process in processes)
    (won, won_out, _), (lost, _, lost_err) = outcomes
    assert (won, lost) == (0, 1), outcomes
    assert "created project 'Racing'" in won_out
    assert "project 'Racing' already exists" in lost_err
    [made] = list_projects(studio)
    assert (made.name, made.shot_count) == ("Racing", 3)
    with studio.read() as session:
        assert media_rows.verify(session, studio.media) == []
    assert len(media_files(studio)) == 1  # the keyframe, stored once


def test_importing_again_afterwards_still_adds_to_the_project(studio, board):
    """One import after another is a request to add the shots again (a storyboard may extend a project)."""
    path = write_json(board, shots_only("Twice"))
    import_storyboard(studio, path)
    again = import_storyboard(studio, path)
    assert (again.created_project, again.shots_added, again.project.shot_count) == (False, 3, 6)


def test_a_long_storyboard_is_written_in_a_short_transaction(studio: Studio, tmp_path: Path) -> None:
    from sqlalchemy import event

    board = tmp_path / "long.csv"
    board.write_text("prompt,duration,characters\n" + "".join(f"shot {n},1,\n" for n in range(400)))
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(studio.db.engine, "before_cursor_execute", count)
    try:
        result = import_storyboard(studio, board, project="Long")
    finally:
        event.remove(studio.db.engine, "before_cursor_execute", count)
    assert result.shots_added == 400 and list_shots(studio, "Long", limit=1).total == 400
    # Inserting the shots is the whole of the work: not a count, a renumbering and a stale check for each of them,
    # which held the database's write lock for 10 s on a storyboard of 5,000 shots.
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO SHOTS")]
    assert len(statements) - len(inserts) < 40, len(statements)
