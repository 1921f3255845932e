"""The service layer on a real SQLite file: every service, its validation, and what it leaves on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from takes_made import finished_takes, queued_takes

from projects import cast, project, render_queue, storyboard, takes
from projects.errors import Conflict, InvalidImage, InvalidInput, NotFound
from projects.studio import Studio


def content_files(studio: Studio) -> set[Path]:
    return {p for p in studio.media.root.glob("??/??/*") if p.is_file()}


# Projects


def test_create_list_rename_delete_project(studio: Studio) -> None:
    created = project.create_project(studio, "  The Lighthouse ", width=512, height=256, fps=24)
    assert (created.name, created.width, created.height, created.fps) == ("The Lighthouse", 512, 256, 24)
    project.create_project(studio, "alpha")
    assert [p.name for p in project.list_projects(studio)] == ["alpha", "The Lighthouse"]

    renamed = project.rename_project(studio, "the lighthouse", "Le Phare")
    assert renamed.id == created.id and renamed.name == "Le Phare"
    assert project.get_project(studio, "LE PHARE").id == created.id
    # Renaming to a different capitalisation of its own name is allowed.
    assert project.rename_project(studio, "Le Phare", "LE PHARE").name == "LE PHARE"

    deleted = project.delete_project(studio, created.id)
    assert deleted.name == "LE PHARE"
    assert [p.name for p in project.list_projects(studio)] == ["alpha"]
    with pytest.raises(NotFound, match="LE PHARE"):
        project.get_project(studio, "LE PHARE")


def test_duplicate_project_names_collide_case_insensitively(studio: Studio) -> None:
    project.create_project(studio, "Mara's Film")
    with pytest.raises(Conflict, match="already exists"):
        project.create_project(studio, "MARA'S FILM")
    other = project.create_project(studio, "Other")
    with pytest.raises(Conflict):
        project.rename_project(studio, other.id, "mara's film")
    assert project.get_project(studio, other.id).name == "Other"


@pytest.mark.parametrize("name", ["Café crème", "灯台守の夜", "🌙 Moon 🌊", "Ñandú — 第一章"])
def test_unicode_project_names_round_trip(studio: Studio, name: str) -> None:
    project.create_project(studio, name)
    assert [p.name for p in project.list_projects(studio)] == [name]
    assert project.get_project(studio, name).name == name


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"fps": 0}, "fps"), ({"fps": 121}, "fps"), ({"width": 100}, "width"), ({"height": 0}, "height")],
)
def test_bad_project_settings_change_nothing(studio: Studio, settings: dict, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        project.create_project(studio, "Film", **settings)
    assert project.list_projects(studio) == []
    made = project.create_project(studio, "Film")
    with pytest.raises(InvalidInput, match=field):
        project.update_project_settings(studio, made.id, **settings)
    after = project.get_project(studio, made.id)
    assert (after.width, after.height, after.fps) == (made.width, made.height, made.fps)


def test_project_status_counts_approvals_and_takes(studio: Studio) -> None:
    film = project.create_project(studio, "Film", width=64, height=64, fps=8)
    storyboard.add_shot(studio, film.id, prompt="one", duration=2)
    storyboard.add_shot(studio, film.id, prompt="two", duration=3.5)
    [take] = finished_takes(studio, film.id, 1)
    queued_takes(studio, film.id, 1)  # a worker would render it next
    before = project.project_status(studio, "Film")
    assert (before.shot_count, before.approved_count, before.missing_approval) == (2, 0, (1, 2))
    assert before.takes_by_status == {"queued": 1, "running": 0, "done": 1, "failed": 0, "cancelled": 0}
    assert before.storyboard_seconds == pytest.approx(5.5)
    takes.approve_take(studio, take.id)
    after = project.project_status(studio, "Film")
    assert (after.approved_count, after.missing_approval) == (1, (2,))
    assert after.approved_seconds == pytest.approx(16 / 8)


def test_deleting_a_project_removes_its_media_but_keeps_shared_files(studio: Studio, photos: dict[str, Path]) -> None:
    one = project.create_project(studio, "One", width=64, height=64, fps=8)
    two = project.create_project(studio, "Two")
    cast.add_character(studio, one.id, "Mara", references=[photos["astronaut"], photos["coffee"]])
    cast.add_character(studio, two.id, "Mara", references=[photos["astronaut"]])
    storyboard.add_shot(studio, one.id, prompt="p", duration=1)
    finished_takes(studio, one.id, 1)
    assert len(content_files(studio)) == 4  # astronaut once, coffee, the take's video and thumbnail
    project.delete_project(studio, "One")
    remaining = content_files(studio)
    assert len(remaining) == 1
    assert cast.list_characters(studio, "Two")[0].references[0].path in remaining


# Cast


def test_characters_with_reference_images(studio: Studio, photos: dict[str, Path]) -> None:
    film = project.create_project(studio, "Film")
    mara = cast.add_character(
        studio, film.id, "Mara", description="a red-haired keeper", references=[photos["astronaut"]]
    )
    assert mara.references[0].path.read_bytes() == photos["astronaut"].read_bytes()
    assert mara.references[0].original_name == "astronaut.png"
    added = cast.add_reference(studio, mara.id, photos["chelsea"])
    assert (added.extension, added.position) == ("jpg", 2)
    listed = cast.list_characters(studio, film.id)
    assert [r.original_name for r in listed[0].references] == ["astronaut.png", "chelsea.jpg"]

    with pytest.raises(Conflict, match="already has this image"):
        cast.add_reference(studio, mara.id, photos["chelsea"])
    with pytest.raises(Conflict, match="already has a character"):
        cast.add_character(studio, film.id, "MARA")
    renamed = cast.update_character(studio, mara.id, name="Mara Keeper", description="older now")
    assert (renamed.name, renamed.description) == ("Mara Keeper", "older now")

    cast.remove_reference(studio, added.id)
    assert not added.path.exists()
    assert [r.original_name for r in cast.get_character(studio, mara.id).references] == ["astronaut.png"]


def test_bad_reference_image_adds_no_character(studio: Studio, tmp_path: Path, photos: dict[str, Path]) -> None:
    film = project.create_project(studio, "Film")
    fake = tmp_path / "notes.png"
    fake.write_text("these are my notes, not a picture")
    with pytest.raises(InvalidImage, match=r"notes\.png"):
        cast.add_character(studio, film.id, "Mara", references=[photos["astronaut"], fake])
    assert cast.list_characters(studio, film.id) == []
    assert content_files(studio) == set()


@pytest.mark.parametrize("name", ["", "   ", "x" * 10_000, "a/b", "..", "nul\x00byte", "tab\there"])
def test_bad_character_names_are_refused(studio: Studio, name: str) -> None:
    film = project.create_project(studio, "Film")
    with pytest.raises(InvalidInput, match="character name"):
        cast.add_character(studio, film.id, name)
    assert cast.list_characters(studio, film.id) == []


def test_removing_a_character_used_in_shots_needs_force(studio: Studio, photos: dict[str, Path]) -> None:
    film = project.create_project(studio, "Film")
    mara = cast.add_character(studio, film.id, "Mara", references=[photos["astronaut"]])
    storyboard.add_shot(studio, film.id, prompt="establishing", duration=2)
    storyboard.add_shot(studio, film.id, prompt="Mara waves", duration=2, characters=["Mara"])
    storyboard.add_shot(studio, film.id, prompt="close-up", duration=2, keyframe_character="Mara")
    with pytest.raises(Conflict, match=r"shot\(s\) 2, 3"):
        cast.remove_character(studio, mara.id)
    assert [c.name for c in cast.list_characters(studio, film.id)] == ["Mara"]
    cast.remove_character(studio, mara.id, force=True)
    shots = storyboard.list_shots(studio, film.id).items
    assert shots[1].characters == ()
    assert shots[2].keyframe.source == "none"
    assert not mara.references[0].path.exists()


# Shot list


def test_shots_insert_move_delete_keep_numbers_contiguous(studio: Studio) -> None:
    film = project.create_project(studio, "Film")
    a = storyboard.add_shot(studio, film.id, prompt="A", duration=1)
    b = storyboard.add_shot(studio, film.id, prompt="B", duration=1)
    c = storyboard.add_shot(studio, film.id, prompt="C", duration=1, position=1)

    def order() -> list[str]:
        return [s.prompt for s in storyboard.list_shots(studio, film.id).items]

    assert order() == ["C", "A", "B"]
    assert [s.prompt for s in storyboard.move_shot(studio, c.id, 3)] == ["A", "B", "C"]
    storyboard.move_shot(studio, b.id, 1)
    assert order() == ["B", "A", "C"]
    storyboard.delete_shot(studio, b.id)
    page = storyboard.list_shots(studio, film.id)
    assert [(s.number, s.prompt) for s in page.items] == [(1, "A"), (2, "C")]
    with pytest.raises(InvalidInput, match="between 1 and 2"):
        storyboard.move_shot(studio, a.id, 3)
    with pytest.raises(InvalidInput, match="between 1 and 3"):
        storyboard.add_shot(studio, film.id, prompt="D", duration=1, position=5)
    assert order() == ["A", "C"]


def test_shot_fields_round_trip_and_edit(studio: Studio, photos: dict[str, Path]) -> None:
    film = project.create_project(studio, "Film")
    cast.add_character(studio, film.id, "Mara", references=[photos["astronaut"]])
    cast.add_character(studio, film.id, "Ben", references=[photos["rocket"]])
    shot = storyboard.add_shot(
        studio,
        film.id,
        prompt="Mara climbs the stairs",
        duration="4.5",
        scene=1,
        title="Arrival",
        camera=" Dolly-In ",
        characters=["mara", "Ben"],
        keyframe=photos["coffee"],
    )
    assert (shot.scene, shot.title, shot.duration, shot.camera) == ("1", "Arrival", 4.5, "dolly-in")
    assert shot.characters == ("Mara", "Ben")
    assert shot.keyframe.source == "image" and shot.keyframe.path.read_bytes() == photos["coffee"].read_bytes()

    edited = storyboard.update_shot(studio, shot.id, camera="w-16,jw-16", keyframe_character="Ben", characters=[])
    assert edited.camera == "w-16,jw-16"
    assert edited.keyframe.source == "character" and edited.keyframe.character == "Ben"
    assert edited.characters == () and edited.prompt == "Mara climbs the stairs"
    assert not shot.keyframe.path.exists()  # the keyframe image was orphaned and removed

    cleared = storyboard.update_shot(studio, shot.id, keyframe_character=None, continue_from_previous=True)
    assert cleared.keyframe.source == "none" and cleared.continue_from_previous


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": "", "duration": 2}, "prompt"),
        ({"prompt": "   ", "duration": 2}, "prompt"),
        ({"prompt": "p", "duration": 0}, "duration"),
        ({"prompt": "p", "duration": -1}, "duration"),
        ({"prompt": "p", "duration": 601}, "duration"),
        ({"prompt": "p", "duration": float("nan")}, "duration"),
        ({"prompt": "p", "duration": "long"}, "duration"),
        ({"prompt": "p", "duration": 2, "characters": ["Nobody"]}, "unknown character 'Nobody'"),
        ({"prompt": "p", "duration": 2, "characters": ["Mara", "mara"]}, "listed twice"),
        ({"prompt": "p", "duration": 2, "camera": "fly-32"}, "camera"),
        ({"prompt": "p", "duration": 2, "camera": "w-0"}, "camera"),
        ({"prompt": "p", "duration": 2, "keyframe_character": "Ghost"}, "unknown character 'Ghost'"),
        ({"prompt": "p" * 4001, "duration": 2}, "prompt"),
    ],
)
def test_bad_shot_fields_change_nothing(studio: Studio, photos: dict[str, Path], fields: dict, message: str) -> None:
    film = project.create_project(studio, "Film")
    cast.add_character(studio, film.id, "Mara", references=[photos["astronaut"]])
    storyboard.add_shot(studio, film.id, prompt="kept", duration=1)
    files = content_files(studio)
    keyframe = {} if "keyframe_character" in fields else {"keyframe": photos["coffee"]}
    with pytest.raises(InvalidInput, match=message):
        storyboard.add_shot(studio, film.id, **keyframe, **fields)
    page = storyboard.list_shots(studio, film.id)
    assert [s.prompt for s in page.items] == ["kept"]
    assert content_files(studio) == files


def test_editing_a_shot_with_a_bad_value_keeps_the_old_values(studio: Studio) -> None:
    film = project.create_project(studio, "Film")
    shot = storyboard.add_shot(studio, film.id, prompt="kept", duration=3, camera="pan-left")
    with pytest.raises(InvalidInput, match="duration"):
        storyboard.update_shot(studio, shot.id, prompt="changed", duration=0)
    again = storyboard.get_shot(studio, shot.id)
    assert (again.prompt, again.duration, again.camera) == ("kept", 3.0, "pan-left")


def test_list_shots_pages(studio: Studio) -> None:
    film = project.create_project(studio, "Film")
    for i in range(1, 8):
        storyboard.add_shot(studio, film.id, prompt=f"shot {i}", duration=1)
    page = storyboard.list_shots(studio, film.id, offset=5, limit=5)
    assert [s.number for s in page.items] == [6, 7]
    assert (page.total, page.has_more) == (7, False)
    assert storyboard.list_shots(studio, film.id, offset=0, limit=3).has_more
    with pytest.raises(InvalidInput, match="limit"):
        storyboard.list_shots(studio, film.id, limit=0)
    with pytest.raises(InvalidInput, match="offset"):
        storyboard.list_shots(studio, film.id, offset=-1)


# Takes


def test_takes_are_numbered_stored_and_approved_one_per_shot(studio: Studio) -> None:
    film = project.create_project(studio, "Film", width=64, height=64, fps=8)
    shot = storyboard.add_shot(studio, film.id, prompt="p", duration=2)
    storyboard.add_shot(studio, film.id, prompt="q", duration=2)
    first, second = finished_takes(studio, film.id, 1, count=2)
    [elsewhere] = finished_takes(studio, film.id, 2)
    assert (first.take_number, second.take_number, elsewhere.take_number) == (1, 2, 1)
    assert first.status == "done" and first.video_path.read_bytes()[4:8] == b"ftyp"
    assert first.video_path != second.video_path  # seeds 7 and 8
    assert "encode" in first.timings and first.provenance["backend"] == "animatic"

    takes.approve_take(studio, first.id)
    takes.approve_take(studio, elsewhere.id)
    takes.approve_take(studio, second.id)
    assert not takes.get_take(studio, first.id).approved
    assert takes.get_take(studio, second.id).approved
    assert takes.get_take(studio, elsewhere.id).approved  # another shot's approval is untouched
    assert storyboard.get_shot(studio, shot.id).approved_take_id == second.id

    unapproved = takes.unapprove_take(studio, second.id)
    assert not unapproved.approved and storyboard.get_shot(studio, shot.id).approved_take_id is None


def test_only_finished_takes_can_be_approved(studio: Studio) -> None:
    film = project.create_project(studio, "Film")
    shot = storyboard.add_shot(studio, film.id, prompt="p", duration=2)
    [queued] = queued_takes(studio, film.id, 1)
    with pytest.raises(Conflict, match="only a finished take"):
        takes.approve_take(studio, queued)
    render_queue.cancel_job(studio, render_queue.job_of_take(studio, queued).id)
    cancelled = takes.get_take(studio, queued)
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled before it started")
    with pytest.raises(Conflict, match="is cancelled"):
        takes.approve_take(studio, queued)
    with pytest.raises(NotFound, match="no take with id 999"):
        takes.approve_take(studio, 999)
    assert storyboard.get_shot(studio, shot.id).approved_take_id is None


def test_list_takes_pages_and_filters(studio: Studio) -> None:
    film = project.create_project(studio, "Film", width=64, height=64, fps=8)
    shots = [storyboard.add_shot(studio, film.id, prompt=f"s{i}", duration=1) for i in range(3)]
    for number in (1, 2, 3):
        finished_takes(studio, film.id, number)
    for number in (1, 2, 3):
        queued_takes(studio, film.id, number)
    page = takes.list_takes(studio, film.id, offset=2, limit=3)
    assert page.total == 6
    assert [(t.shot_number, t.take_number) for t in page.items] == [(2, 1), (2, 2), (3, 1)]
    only = takes.list_takes(studio, film.id, shot_number=2)
    assert [t.shot_id for t in only.items] == [shots[1].id, shots[1].id]
    assert takes.list_takes(studio, film.id, status="queued").total == 3
    with pytest.raises(InvalidInput, match="status"):
        takes.list_takes(studio, film.id, status="finished")
    with pytest.raises(NotFound, match="no shot 9"):
        takes.list_takes(studio, film.id, shot_number=9)


def test_deleting_a_take_removes_its_video(studio: Studio) -> None:
    film = project.create_project(studio, "Film", width=64, height=64, fps=8)
    shot = storyboard.add_shot(studio, film.id, prompt="p", duration=2)
    [take] = finished_takes(studio, film.id, 1)
    assert take.video_path.exists()
    takes.delete_take(studio, take.id)
    assert not take.video_path.exists()
    assert storyboard.get_shot(studio, shot.id).take_count == 0
    [again] = finished_takes(studio, film.id, 1)
    assert again.take_number == 1  # numbers follow the takes that exist
