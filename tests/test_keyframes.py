"""Keyframes from the cast: candidates drawn through the queue, scored on real faces, approved, and what that
changes (the shot's keyframe, its video takes' stale marks, the last frame of the shot before).

The cast are photographs of real people (``tests/photos``, public domain), scored by dlib's face model; the
candidates are drawn by ``compose``, the CPU default, through a real worker on a real SQLite data directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.consistency import identity, look
from pipelines.embedders import load_embedder
from pipelines.faces import DIFFERENT, SAME, load_face_recognizer
from pipelines.pictures import open_rgb
from projects import cast, keyframes, project, render_queue, storyboard, takes
from projects.errors import Conflict, InvalidInput, NotFound
from projects.keyframes import DrawSettings
from projects.studio import Studio
from projects.worker import RenderWorker
from tests.takes_made import finished_takes

PHOTOS = Path(__file__).with_name("photos")
CAST = {"Mara": ("obama-1.jpg", "obama-2.jpg"), "Ben": ("biden-1.jpg",)}
SHOTS = (("Mara",), ("Mara", "Ben"), ("Ben",), ("Ben", "Mara"), ("Mara",), ("Ben",))


def draw(studio: Studio) -> int:
    """Draw every queued picture now; how many were drawn."""
    with RenderWorker(studio, device="cpu") as worker:
        return worker.run(once=True)


def lighthouse(studio: Studio, photos: dict[str, Path], cast_photos: dict[str, tuple[str, ...]] = CAST) -> str:
    """A 2-character, 6-shot project at 640x384 whose first shot is set in a kitchen (a real photo)."""
    project.create_project(studio, "Lighthouse", width=640, height=384, fps=8)
    descriptions = {"Mara": "a keeper in a dark suit", "Ben": "a harbour master with white hair"}
    for name, files in cast_photos.items():
        cast.add_character(
            studio, "Lighthouse", name, description=descriptions[name], references=[PHOTOS / f for f in files]
        )
    for number, who in enumerate(SHOTS, start=1):
        storyboard.add_shot(
            studio,
            "Lighthouse",
            scene="1",
            title=f"Shot {number}",
            prompt=f"{' and '.join(who)} in the kitchen",
            duration=1.0,
            characters=list(who),
            keyframe=photos["coffee"] if number == 1 else None,
        )
    return "Lighthouse"


def test_compose_keyframes_score_as_the_right_person_for_every_character_in_every_shot(
    studio: Studio, photos: dict[str, Path]
) -> None:
    lighthouse(studio, photos)
    jobs = keyframes.queue_keyframes(studio, "Lighthouse", candidates=1, seed=11)
    assert [(job.kind, job.what) for job in jobs] == [("keyframe", f"shot {n} first frame 1") for n in range(1, 7)]
    assert draw(studio) == 6
    drawn = keyframes.list_keyframes(studio, "Lighthouse")
    assert [p.status for p in drawn] == ["done"] * 6
    for picture, who in zip(drawn, SHOTS, strict=True):
        with Image.open(picture.path) as image:
            assert image.size == (640, 384)
        verdicts = {name: part["verdict"] for name, part in picture.scores["characters"].items()}
        assert verdicts == dict.fromkeys(who, SAME), (picture.label, picture.scores)
        assert picture.scores["identity"] >= 0.73
        # Continuity is against the previous shot's first frame: shot 1 has one (the kitchen), no other has one yet.
        if picture.shot_number == 2:
            assert 0.0 <= picture.scores["continuity"] <= 1.0
        else:
            assert "continuity" not in picture.scores


def test_keyframes_drawn_from_swapped_references_are_caught(studio: Studio, photos: dict[str, Path]) -> None:
    # The same storyboard, drawn with each character's photos swapped for the other's ...
    swapped = {"Mara": CAST["Ben"], "Ben": CAST["Mara"]}
    lighthouse(studio, photos, swapped)
    keyframes.queue_keyframes(studio, "Lighthouse", shots=[1, 3], candidates=1, seed=3)
    draw(studio)
    # ... and judged against the true cast: the face model says it is somebody else.
    recognizer = load_face_recognizer()
    truth = {name: [open_rgb(PHOTOS / f) for f in files] for name, files in CAST.items()}
    for picture in keyframes.list_keyframes(studio, "Lighthouse"):
        name = SHOTS[picture.shot_number - 1][0]
        frames = np.asarray(open_rgb(picture.path))[None]
        references = {name: truth[name]}
        judged = identity(frames, references, recognizer, look(frames, references, load_embedder("offline")), fps=1)
        assert judged.characters[name]["verdict"] == DIFFERENT, picture.label
        # The studio's own score, against the (swapped) cast it was drawn from, is a match: only the truth catches it.
        assert picture.scores["characters"][name]["verdict"] == SAME


def test_a_candidate_is_stored_with_its_provenance_and_its_seed_draws_it_again(
    studio: Studio, photos: dict[str, Path]
) -> None:
    lighthouse(studio, photos)
    keyframes.queue_keyframes(studio, "Lighthouse", shots=[2], candidates=2, seed=40)
    keyframes.queue_keyframes(studio, "Lighthouse", shots=[2], candidates=1, seed=40)
    draw(studio)
    first, second, again = keyframes.list_keyframes(studio, "Lighthouse", shot_number=2)
    assert (first.number, second.number, again.number) == (1, 2, 3)
    assert (first.seed, second.seed, again.seed) == (40, 41, 40)
    assert again.sha256 == first.sha256  # the same seed, the same picture
    assert second.sha256 != first.sha256
    provenance = first.provenance
    assert provenance["backend"] == "compose" and provenance["seed"] == 40
    assert provenance["prompt"] == "Mara and Ben in the kitchen"
    references = {c.name: [r.sha256 for r in c.references] for c in cast.list_characters(studio, "Lighthouse")}
    subjects = [i["sha256"] for i in provenance["inputs"] if i["role"] == "subject"]
    assert subjects == references["Mara"] + references["Ben"]
    # Shot 2 has no picture of its own: it is drawn in its scene's location, shot 1's kitchen.
    location = storyboard.shot_number(studio, "Lighthouse", 1).keyframe.sha256
    assert [i["sha256"] for i in provenance["inputs"] if i["role"] == "scene"] == [location]
    assert provenance["image"]["sha256"] == first.sha256
    assert first.params["generation"]["width"] == 640


def test_approving_a_candidate_makes_it_the_keyframe_and_marks_the_shots_video_takes_stale(
    studio: Studio, photos: dict[str, Path]
) -> None:
    lighthouse(studio, photos)
    (old,) = finished_takes(studio, "Lighthouse", 1)
    shot = storyboard.shot_number(studio, "Lighthouse", 1)
    assert shot.keyframe.source == "image" and not shot.stale
    keyframes.queue_keyframes(studio, "Lighthouse", shots=[1], candidates=2, seed=1)
    draw(studio)
    _, chosen = keyframes.list_keyframes(studio, "Lighthouse", shot_number=1)

    approved = keyframes.approve_keyframe(studio, chosen.id)

    assert approved.approved
    shot = storyboard.shot_number(studio, "Lighthouse", 1)
    assert shot.keyframe.source == "drawn" and shot.keyframe.sha256 == chosen.sha256
    assert shot.keyframe.picture_take_id == chosen.id
    assert shot.stale  # its take starts from the kitchen photo, not from the approved keyframe
    assert storyboard.shot_number(studio, "Lighthouse", 1).keyframe_candidates == 2
    # A new take starts from the approved keyframe, and the mark goes once it is the shot's take.
    (new,) = finished_takes(studio, "Lighthouse", 1, seed=8)
    assert new.provenance["inputs"]["keyframe"] == chosen.sha256 != old.provenance["inputs"]["keyframe"]
    takes.approve_take(studio, new.id)
    assert not storyboard.shot_number(studio, "Lighthouse", 1).stale
    # Approving the other candidate moves the approval (one per shot and frame) and marks the shot again.
    keyframes.approve_keyframe(studio, keyframes.list_keyframes(studio, "Lighthouse", shot_number=1)[0].id)
    assert [p.approved for p in keyframes.list_keyframes(studio, "Lighthouse", shot_number=1)] == [True, False]
    assert storyboard.shot_number(studio, "Lighthouse", 1).stale


def test_a_shot_ends_on_the_next_shots_approved_first_frame(
    studio: Studio, photos: dict[str, Path], wan_folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTINUITY_MODEL_WAN_I2V", str(wan_folders["wan-i2v"]))
    project.create_project(studio, "Bridge", width=64, height=64, fps=8)
    cast.add_character(studio, "Bridge", "Mara", references=[PHOTOS / "obama-1.jpg"])
    first = storyboard.add_shot(
        studio, "Bridge", prompt="Mara walks", duration=1.0, characters=["Mara"], keyframe=photos["coffee"]
    )
    storyboard.update_shot(studio, first.id, last_frame_from_next=True)
    storyboard.add_shot(studio, "Bridge", prompt="Mara turns", duration=1.0, characters=["Mara"])
    keyframes.queue_keyframes(studio, "Bridge", shots=[2], candidates=2, seed=5)
    draw(studio)
    one, two = keyframes.list_keyframes(studio, "Bridge", shot_number=2)
    keyframes.approve_keyframe(studio, one.id)
    ending = storyboard.shot_number(studio, "Bridge", 1).last_frame
    assert (ending.source, ending.sha256) == ("next shot", one.sha256)

    settings = render_queue.RenderSettings(backend="wan-i2v", steps=2)
    render_queue.queue_renders(studio, "Bridge", shots=[1], settings=settings, seed=1)
    with RenderWorker(studio, device="cpu", score=False) as worker:
        worker.run(once=True)
    (take,) = takes.list_takes(studio, "Bridge", shot_number=1).items
    assert take.status == "done", take.error
    assert take.provenance["inputs"]["last_frame"] == one.sha256  # wan-i2v bridged the cut to shot 2
    takes.approve_take(studio, take.id)
    assert not storyboard.shot_number(studio, "Bridge", 1).stale
    # Shot 2's first frame changes: shot 1 no longer ends where shot 2 starts.
    keyframes.approve_keyframe(studio, two.id)
    assert storyboard.shot_number(studio, "Bridge", 1).stale


def test_a_character_sheet_is_drawn_scored_against_the_photos_and_kept_as_references(
    studio: Studio, photos: dict[str, Path]
) -> None:
    lighthouse(studio, photos)
    with pytest.raises(InvalidInput, match="cannot draw the profile view"):
        keyframes.queue_sheet(studio, "Lighthouse", "Mara", views=["profile"], settings=DrawSettings("compose"))
    jobs = keyframes.queue_sheet(
        studio, "Lighthouse", "Mara", views=["front", "full-figure"], settings=DrawSettings("compose"), seed=2
    )
    assert [(job.kind, job.what, job.shot_number) for job in jobs] == [
        ("view", "Mara front 1", 0),
        ("view", "Mara full-figure 1", 0),
    ]
    draw(studio)
    front, figure = keyframes.list_views(studio, "Lighthouse", "Mara")
    assert front.status == figure.status == "done"
    assert front.scores["characters"]["Mara"]["verdict"] == SAME
    kept = keyframes.approve_keyframe(studio, front.id)
    assert kept.approved
    (mara,) = [c for c in cast.list_characters(studio, "Lighthouse") if c.name == "Mara"]
    assert [ref.sha256 for ref in mara.references][-1] == front.sha256
    keyframes.approve_keyframe(studio, front.id)  # kept already: nothing more happens
    (again,) = [c for c in cast.list_characters(studio, "Lighthouse") if c.name == "Mara"]
    assert len(again.references) == len(mara.references) == len(CAST["Mara"]) + 1


def test_bad_requests_are_refused_and_queue_nothing(studio: Studio, photos: dict[str, Path]) -> None:
    lighthouse(studio, photos)
    storyboard.add_shot(studio, "Lighthouse", scene="2", prompt="an empty room", duration=1.0)  # shot 7: nothing
    refused = [
        ({"candidates": 0}, InvalidInput, "between 1 and 16"),
        ({"candidates": 17}, InvalidInput, "between 1 and 16"),
        ({"candidates": True}, InvalidInput, "between 1 and 16"),
        ({"settings": DrawSettings("sdxl")}, InvalidInput, "unknown keyframe backend 'sdxl'"),
        ({"settings": DrawSettings("animatic")}, InvalidInput, "unknown keyframe backend 'animatic'"),
        ({"settings": DrawSettings("qwen-image-edit")}, Conflict, "no Qwen-Image-Edit weights configured"),
        ({"shots": [7]}, InvalidInput, "shot 7: it has no characters with reference pictures and no location"),
        ({"shots": [1, 99]}, Exception, "99"),
        ({"seed": -1}, InvalidInput, "seed"),
    ]
    for arguments, error, message in refused:
        with pytest.raises(error, match=message):
            keyframes.queue_keyframes(studio, "Lighthouse", **arguments)
    assert render_queue.list_jobs(studio, "Lighthouse") == []
    with pytest.raises(NotFound, match="no keyframe candidate with id 404"):
        keyframes.approve_keyframe(studio, 404)
    (job,) = keyframes.queue_keyframes(studio, "Lighthouse", shots=[1], candidates=1)
    with pytest.raises(Conflict, match="is queued; only a drawn one can be approved"):
        keyframes.approve_keyframe(studio, job.picture_take_id)


def test_a_candidate_job_is_cancelled_and_retried_like_a_take(studio: Studio, photos: dict[str, Path]) -> None:
    lighthouse(studio, photos)
    (job,) = keyframes.queue_keyframes(studio, "Lighthouse", shots=[3], candidates=1, seed=9)
    cancelled = render_queue.cancel_job(studio, job.id)
    assert cancelled.state == "cancelled"
    assert keyframes.get_keyframe(studio, job.picture_take_id).status == "cancelled"
    assert draw(studio) == 0
    render_queue.retry_job(studio, job.id)
    assert draw(studio) == 1
    picture = keyframes.get_keyframe(studio, job.picture_take_id)
    assert picture.status == "done" and picture.path is not None and picture.path.is_file()
    listed = render_queue.list_jobs(studio, "Lighthouse")
    assert [(j.kind, j.what, j.state) for j in listed] == [("keyframe", "shot 3 first frame 1", "done")]


def test_a_storyboard_file_names_a_last_frame_or_the_next_shots_first(
    studio: Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    from projects.storyboard_file import import_storyboard

    folder = tmp_path / "board"
    (folder / "refs").mkdir(parents=True)
    shutil.copy(photos["coffee"], folder / "refs" / "kitchen.png")
    shutil.copy(photos["rocket"], folder / "refs" / "pier.webp")
    board = folder / "board.json"
    board.write_text(
        '{"project": "Ends", "shots": ['
        '{"prompt": "a", "duration": 1, "keyframe": "refs/kitchen.png", "last_frame": "refs/pier.webp"},'
        '{"prompt": "b", "duration": 1, "keyframe": "refs/kitchen.png", "last_frame_from_next": true},'
        '{"prompt": "c", "duration": 1, "keyframe": "refs/pier.webp"}]}'
    )
    import_storyboard(studio, board)
    one, two, three = storyboard.all_shots(studio, "Ends")
    assert one.last_frame.source == "image" and not one.last_frame_from_next
    assert (two.last_frame.source, two.last_frame.sha256) == ("next shot", three.keyframe.sha256)
    both = folder / "both.json"
    both.write_text(
        '{"project": "Both", "shots": [{"prompt": "a", "duration": 1, "last_frame": "refs/pier.webp", '
        '"last_frame_from_next": true}]}'
    )
    with pytest.raises(InvalidInput, match="last frame or end on the next shot's first frame, not both"):
        import_storyboard(studio, both)


def test_the_command_line_draws_lists_and_approves_keyframes(
    tmp_path: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import main
    from projects.studio import open_studio

    monkeypatch.delenv("CONTINUITY_MODELS", raising=False)
    monkeypatch.delenv("CONTINUITY_MODEL_QWEN_IMAGE_EDIT", raising=False)
    data = tmp_path / "data"
    opened = open_studio(data)
    try:
        lighthouse(opened, photos)
    finally:
        opened.close()

    def cli(*argv: object) -> tuple[int, Any]:
        code = main([*map(str, argv), "--data-dir", str(data), "--json"])
        out = capsys.readouterr().out
        return code, json.loads(out)

    code, drawn = cli("keyframes", "Lighthouse", "--shots", "2-3", "--candidates", "2", "--seed", "4", "--wait")
    assert code == 0
    assert [job["what"] for job in drawn["jobs"]] == [
        "shot 2 first frame 1",
        "shot 2 first frame 2",
        "shot 3 first frame 1",
        "shot 3 first frame 2",
    ]
    verdicts = [{n: c["verdict"] for n, c in d["scores"]["characters"].items()} for d in drawn["candidates"]]
    assert verdicts == [{"Mara": SAME, "Ben": SAME}] * 2 + [{"Ben": SAME}] * 2
    code, listed = cli("candidates", "Lighthouse", "--shot", "3")
    assert code == 0 and [c["number"] for c in listed["candidates"]] == [1, 2]
    code, approved = cli("approve-keyframe", listed["candidates"][1]["id"])
    assert code == 0 and approved["approved"] and approved["shot_number"] == 3
    code, shots = cli("shots", "Lighthouse")
    assert shots["shots"][2]["keyframe"]["source"] == "drawn"
    assert shots["shots"][2]["keyframe"]["keyframe_candidate_id"] == approved["id"]
    code, refused = cli("keyframes", "Lighthouse", "--backend", "qwen-image-edit")
    assert code == 1 and "no Qwen-Image-Edit weights configured" in refused["error"]["message"]
    code, refused = cli("approve-keyframe", 999)
    assert code == 1 and refused["error"]["type"] == "NotFound"

    # Weights are fetched where the keyframe backends look, and listed.
    from tiny_qwen_edit import build_qwen_edit_folder

    folder = build_qwen_edit_folder(tmp_path / "weights")
    code, fetched = cli("fetch-weights", "qwen-image-edit", folder)
    assert code == 0 and fetched["folder"] == str(data / "models" / "qwen-image-edit")
    code, listed = cli("backends")
    qwen = next(b for b in listed["backends"] if b["name"] == "qwen-image-edit")
    assert (qwen["kind"], qwen["available"], qwen["source"]) == ("keyframe", True, fetched["folder"])


def test_an_edit_model_draws_candidates_through_the_queue_told_who_each_character_is(
    studio: Studio, photos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiny_qwen_edit import build_qwen_edit_folder

    from pipelines.loading import PipelineCache

    monkeypatch.setenv("CONTINUITY_MODEL_QWEN_IMAGE_EDIT", str(build_qwen_edit_folder(tmp_path / "models")))
    project.create_project(studio, "Edit", width=96, height=64, fps=8)
    cast.add_character(
        studio, "Edit", "Mara", description="a keeper in a dark suit", references=[PHOTOS / "obama-1.jpg"]
    )
    storyboard.add_shot(
        studio, "Edit", prompt="Mara waits on the pier", duration=1.0, characters=["Mara"], keyframe=photos["rocket"]
    )
    settings = DrawSettings("qwen-image-edit", steps=2)
    keyframes.queue_keyframes(studio, "Edit", candidates=2, settings=settings, seed=21)
    cache = PipelineCache(capacity=1)
    with RenderWorker(studio, device="cpu", cache=cache, keep_loaded=True) as worker:
        assert worker.run(once=True) == 2
    assert cache.loads == 1  # one load for both candidates
    first, second = keyframes.list_keyframes(studio, "Edit")
    assert (first.status, second.status) == ("done", "done"), (first.error, second.error)
    assert first.sha256 != second.sha256
    provenance = first.provenance
    assert provenance["backend"] == "qwen-image-edit" and provenance["seed"] == 21
    assert provenance["model_prompt"].startswith("Picture 1 shows Mara, a keeper in a dark suit.")
    assert provenance["model_prompt"].endswith("Mara waits on the pier")
    assert provenance["load_spec"]["device"] == "cpu"
    assert provenance["model_files"]
    location = storyboard.shot_number(studio, "Edit", 1).keyframe.sha256
    assert [(i["role"], i["sha256"]) for i in provenance["inputs"]][-1] == ("scene", location)
    with Image.open(first.path) as image:
        assert image.size == (96, 64)
