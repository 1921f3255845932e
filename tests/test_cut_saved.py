"""The cut kept with the project: trims, a crossfade into each shot and title cards, saved with the shots, moving
with them, used by every export (film and timeline), carried by bundles, and refused whole when any value is bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import probes
import pytest

from pipelines.video import read_frames
from projects import bundles, render_queue, storyboard, takes
from projects import project as projects
from projects.cut import ShotCut, save_cut, set_cut, the_cut
from projects.edit_plan import ExportOptions, Trim, plan_edit
from projects.errors import InvalidInput, NotFound
from projects.export import export_project
from projects.studio import Studio, open_studio
from projects.timeline import write_timeline
from projects.worker import RenderWorker

FPS = 8


def make_film(studio: Studio) -> list[Path]:
    """Three approved shots of 1, 2 and 1 s at 8 fps; their take files."""
    projects.create_project(studio, "Harbour", width=128, height=80, fps=FPS)
    for number, seconds in enumerate((1.0, 2.0, 1.0), start=1):
        storyboard.add_shot(studio, "Harbour", title=f"Pier {number}", prompt=f"beat {number}", duration=seconds)
    render_queue.queue_renders(studio, "Harbour", takes=1)
    with RenderWorker(studio, score=False) as worker:
        worker.run(once=True)
    made = sorted(takes.list_takes(studio, "Harbour").items, key=lambda take: take.shot_number)
    for take in made:
        takes.approve_take(studio, take.id)
    return [studio.media.path_for(take.video_sha256, "mp4") for take in made]


def frame_count(path: Path) -> int:
    (stream,) = probes.ffprobe(path, "stream=nb_read_frames", count_frames=True)["streams"]
    return int(stream["nb_read_frames"])


@pytest.fixture(scope="module")
def harbour(tmp_path_factory: pytest.TempPathFactory):
    studio = open_studio(tmp_path_factory.mktemp("cut") / "data")
    files = make_film(studio)
    yield studio, files
    studio.close()


def test_the_cut_is_saved_with_each_shot_and_moves_with_it(studio: Studio) -> None:
    projects.create_project(studio, "Harbour", width=128, height=80, fps=FPS)
    for number in (1, 2, 3):
        storyboard.add_shot(studio, "Harbour", title=f"Pier {number}", prompt=f"beat {number}", duration=1.0)
    assert [shot.edited for shot in the_cut(studio, "Harbour")] == [False, False, False]

    saved = set_cut(studio, "Harbour", 2, cut_in=0.25, cut_out=0.75, crossfade=0.5, card="  Later  ")
    assert (saved.cut_in, saved.cut_out, saved.crossfade, saved.card) == (0.25, 0.75, 0.5, "Later")
    # Only what is named changes.
    assert set_cut(studio, "Harbour", 2, crossfade=0).cut_out == 0.75
    shot_two = saved.shot_id
    storyboard.move_shot(studio, shot_two, 3)
    after = the_cut(studio, "Harbour")
    assert [(s.number, s.title, s.trimmed) for s in after] == [
        (1, "Pier 1", False),
        (2, "Pier 3", False),
        (3, "Pier 2", True),
    ]
    assert after[2] == ShotCut(3, shot_two, "Pier 2", 0.25, 0.75, 0.0, "Later")

    # It survives the studio being closed and opened again.
    data = studio.data_dir
    studio.close()
    again = open_studio(data)
    try:
        assert the_cut(again, "Harbour")[2] == after[2]
        assert set_cut(again, "Harbour", 3, cut_out=None, crossfade=None, card="").edited is True  # still trimmed in
        assert set_cut(again, "Harbour", 3, cut_in=0).edited is False
    finally:
        again.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cut_in": -1}, "shot 2: in point: must be more than 0 seconds, got -1"),
        ({"cut_in": float("nan")}, "shot 2: in point: must be a number of seconds"),
        ({"cut_in": 600}, "a shot lasts at most 600 s"),
        ({"cut_in": 1.0, "cut_out": 0.5}, "shot 2: out point: 0.5 s is not after the in point (1 s)"),
        ({"cut_out": 0}, "out point: must be more than 0 seconds"),
        ({"crossfade": 61}, "crossfade: is 61 s; the limit is 60 s"),
        ({"crossfade": True}, "crossfade: must be a number of seconds, got True"),
        ({"crossfade": "0.5"}, "crossfade: must be a number of seconds, got '0.5'"),
        ({"card": "x" * 501}, "title card: is 501 characters; the limit is 500"),
        ({"card": 3}, "title card: must be text, got int"),
        ({"card": "a\x00b"}, "NUL"),
        ({"speed": 2}, "unknown cut values ['speed']"),
    ],
)
def test_a_bad_value_is_refused_and_nothing_of_the_table_is_saved(studio: Studio, values: dict, message: str) -> None:
    projects.create_project(studio, "Harbour", width=128, height=80, fps=FPS)
    for number in (1, 2):
        storyboard.add_shot(studio, "Harbour", prompt=f"beat {number}", duration=1.0)
    before = the_cut(studio, "Harbour")
    with pytest.raises(InvalidInput) as refused:
        save_cut(studio, "Harbour", {1: {"cut_in": 0.5, "card": "Dawn"}, 2: values})
    assert message in str(refused.value)
    assert the_cut(studio, "Harbour") == before  # shot 1's good values were not saved either


def test_a_shot_or_table_that_is_not_there_is_refused(studio: Studio) -> None:
    projects.create_project(studio, "Harbour", width=128, height=80, fps=FPS)
    storyboard.add_shot(studio, "Harbour", prompt="beat", duration=1.0)
    with pytest.raises(NotFound, match="no shot 4"):
        set_cut(studio, "Harbour", 4, cut_in=0.5)
    with pytest.raises(InvalidInput, match="shot numbers are whole numbers"):
        save_cut(studio, "Harbour", {"1": {"cut_in": 0.5}})
    with pytest.raises(InvalidInput, match="must map shot numbers"):
        save_cut(studio, "Harbour", [(1, {"cut_in": 0.5})])
    with pytest.raises(NotFound):
        the_cut(studio, "Nowhere")


def test_every_export_uses_the_saved_cut_with_a_crossfade_of_its_own_into_each_shot(
    harbour: tuple[Studio, list[Path]], tmp_path: Path
) -> None:
    studio, files = harbour
    # Shot 2 uses 0.5-1.5 s of its take and dissolves in over 0.25 s; a card comes before shot 3, which cuts in
    # hard although the export asks for 0.5 s dissolves everywhere else.
    save_cut(
        studio,
        "Harbour",
        {2: {"cut_in": 0.5, "cut_out": 1.5, "crossfade": 0.25}, 3: {"crossfade": 0, "card": "Night"}},
    )
    options = ExportOptions(crossfade=0.5)
    edit = plan_edit(studio, "Harbour", options)
    assert [(item.kind, item.frames) for item in edit.items] == [("take", 8), ("take", 8), ("title", 16), ("take", 8)]
    assert edit.joins == (2, 4, 0)

    film = export_project(studio, "Harbour", tmp_path / "film.mp4", options=options).film
    assert film.frames == frame_count(film.path) == 40 - 6
    made = read_frames(film.path).astype(np.float64)
    one, two, three = (read_frames(path).astype(np.float64) for path in files)
    # The 2-frame dissolve into shot 2: shot 1's last frame under two thirds of shot 2's second used frame.
    blend = one[7] / 3 + two[4 + 1] * 2 / 3
    assert np.abs(made[7] - blend).mean() < min(np.abs(made[7] - one[7]).mean(), np.abs(made[7] - two[5]).mean())
    # Shot 3 after its card: a hard cut, its first frame whole (up to the encoder's loss).
    assert np.abs(made[26] - three[0]).mean() < 4 < np.abs(made[25] - three[0]).mean()

    # The options still win where they speak, and the saved cut can be left out.
    assert plan_edit(studio, "Harbour", ExportOptions(crossfade=0.5, crossfades={3: 0.5})).joins == (2, 4, 4)
    assert plan_edit(studio, "Harbour", ExportOptions(trims={2: Trim(0, 2)})).items[1].frames == 16
    plain = export_project(studio, "Harbour", tmp_path / "plain.mp4", options=ExportOptions(saved_cut=False)).film
    assert (plain.frames, plain.method) == (32, "stream copy")
    with pytest.raises(InvalidInput, match="crossfades: project 'Harbour' has no shot 7"):
        plan_edit(studio, "Harbour", ExportOptions(crossfades={7: 0.5}))


def test_a_saved_trim_past_the_approved_take_is_refused_at_export(
    harbour: tuple[Studio, list[Path]], tmp_path: Path
) -> None:
    studio, _ = harbour
    set_cut(studio, "Harbour", 1, cut_out=1.5)  # shot 1's approved take lasts 1 s
    try:
        with pytest.raises(InvalidInput, match=r"trims\[1\].*out 1.5 s.*<= 1 s.*shot 1's approved take"):
            export_project(studio, "Harbour", tmp_path / "film.mp4")
        assert not (tmp_path / "film.mp4").exists()
    finally:
        set_cut(studio, "Harbour", 1, cut_out=None)


def test_the_timeline_dissolves_where_the_cut_does(harbour: tuple[Studio, list[Path]], tmp_path: Path) -> None:
    import opentimelineio as otio

    studio, _ = harbour
    save_cut(studio, "Harbour", {2: {"crossfade": 0.25}, 3: {"crossfade": 0, "card": "Night"}})
    edit = plan_edit(studio, "Harbour", ExportOptions(crossfade=0.5))
    timeline = otio.adapters.read_from_file(str(write_timeline(edit, tmp_path / "cut.otio").path))
    (video,) = timeline.tracks
    dissolves = [item for item in video if isinstance(item, otio.schema.Transition)]
    assert [(d.in_offset + d.out_offset).to_seconds() for d in dissolves] == [0.25, 0.5]
    assert list(timeline.metadata["continuity"]["crossfade_frames"]) == [2, 4, 0]
    assert video.duration().to_seconds() == pytest.approx(edit.seconds)


def test_a_bundle_carries_the_cut(harbour: tuple[Studio, list[Path]], tmp_path: Path) -> None:
    studio, _ = harbour
    save_cut(studio, "Harbour", {1: {"cut_in": 0.125, "card": "Dawn"}, 2: {"cut_out": 1.0, "crossfade": 0}})
    packed = bundles.pack_project(studio, "Harbour", tmp_path / "harbour.zip").path
    other = open_studio(tmp_path / "other")
    try:
        bundles.unpack_bundle(other, packed, as_name="Copy")
        theirs = [(s.cut_in, s.cut_out, s.crossfade, s.card) for s in the_cut(other, "Copy")]
        ours = [(s.cut_in, s.cut_out, s.crossfade, s.card) for s in the_cut(studio, "Harbour")]
        assert theirs == ours and theirs[0] == (0.125, None, None, "Dawn")
    finally:
        other.close()
