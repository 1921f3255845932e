"""Retake until consistent, on the animatic, with the face recognizer judging photographs of real people.

The storyboard's character is Barack Obama (his reference is one White House portrait). Shots 1 and 4 start from
other portraits of him; shot 2 starts from Joe Biden's, so no take of it can show Obama, and shot 3 continues from
shot 2. The loop must stop early on the good shots, list the bad ones with their best take, never render more
than the budget, and start shot 3 only from what shot 2 settled on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.cli import main
from projects import cast, project, storyboard, takes
from projects.errors import InvalidInput
from projects.render_now import wait_for_jobs
from projects.retakes import Bar, render_until
from projects.studio import Studio
from storage.models import Job, Take

PHOTOS = Path(__file__).parent / "photos"


@pytest.fixture
def film(studio: Studio) -> int:
    made = project.create_project(studio, "Retakes", width=320, height=192, fps=8)
    cast.add_character(studio, made.id, "Barack", references=[PHOTOS / "obama-1.jpg"])
    for keyframe in ("obama-2", "biden-1", None, "obama-3"):
        storyboard.add_shot(
            studio,
            made.id,
            prompt=f"Barack, from {keyframe or 'the shot before'}",
            duration=1.0,
            characters=["Barack"],
            keyframe=PHOTOS / f"{keyframe}.jpg" if keyframe else None,
            continue_from_previous=keyframe is None,
        )
    return made.id


def rendered(studio: Studio, film: int) -> dict[int, list[Take]]:
    with studio.read() as session:
        found: dict[int, list[Take]] = {}
        for take in session.scalars(select(Take).order_by(Take.id)):
            session.expunge(take)
            found.setdefault(take.shot_id, []).append(take)
    shots = storyboard.list_shots(studio, film).items
    return {shot.number: found.get(shot.id, []) for shot in shots}


def wait(studio: Studio, ids: list[int]) -> object:
    return wait_for_jobs(studio, ids)


def test_the_loop_stops_early_on_good_shots_and_lists_the_bad_ones_within_budget(studio: Studio, film: int) -> None:
    report = render_until(studio, film, "identity>=0.7", max_takes=3, seed=11, wait=wait)
    by_shot = {shot.shot_number: shot for shot in report.shots}
    assert [shot.shot_number for shot in report.not_cleared] == [2, 3]
    for number in (1, 4):  # one take was enough, and it is approved
        good = by_shot[number]
        assert good.cleared and good.takes_rendered == 1 and good.approved
        assert good.characters["Barack"]["verdict"] == "same person" and good.score >= 0.7
    for number in (2, 3):  # the budget, no more; the best take is named, nothing approved
        bad = by_shot[number]
        assert not bad.cleared and bad.takes_rendered == 3 and not bad.approved and bad.take_id is not None
        assert bad.characters["Barack"]["verdict"] == "different person"
        assert "no take reached identity>=0.7 in 3 take(s)" in bad.note
    made = rendered(studio, film)
    assert {number: len(found) for number, found in made.items()} == {1: 1, 2: 3, 3: 3, 4: 1}
    assert report.takes_rendered == 8
    # Shot 3 started only once shot 2 was settled, from one of shot 2's takes.
    shot_2_done = max(take.finished_at for take in made[2])
    assert all(take.created_at >= shot_2_done for take in made[3])
    assert {take.source_take_id for take in made[3]} <= {take.id for take in made[2]}
    approved = {t.shot_number for t in takes.list_takes(studio, film, limit=100).items if t.approved}
    assert approved == {1, 4}
    # Again: the cleared shots already have their take and render nothing; the others get a new budget.
    again = render_until(studio, film, Bar("identity", 0.7), max_takes=1, shots=[1, 2, 4], wait=wait)
    assert [(s.shot_number, s.takes_rendered, s.cleared) for s in again.shots] == [
        (1, 0, True),
        (2, 1, False),
        (4, 0, True),
    ]
    assert again.shots[0].note == "a take already cleared the bar"


def test_review_leaves_the_clearing_take_unapproved(studio: Studio, film: int) -> None:
    report = render_until(studio, film, "identity>=0.7", max_takes=2, shots=[1], approve=False, wait=wait)
    (shot,) = report.shots
    assert shot.cleared and not shot.approved
    assert not any(t.approved for t in takes.list_takes(studio, film).items)


@pytest.mark.parametrize(
    ("bar", "options", "message"),
    [
        ("identity=0.7", {}, "must look like identity>=0.7"),
        ("beauty>=0.5", {}, "must name one of identity, look, continuity, stability"),
        ("identity>=1.5", {}, "a score in 0..1"),
        ("identity>=0.7", {"max_takes": 0}, "between 1 and 50"),
        ("identity>=0.7", {"shots": [9]}, "no shot 9"),
    ],
)
def test_bad_requests_render_nothing(
    studio: Studio, film: int, bar: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        render_until(studio, film, bar, wait=wait, **options)
    with studio.read() as session:
        assert session.scalars(select(Job)).all() == [] and session.scalars(select(Take)).all() == []


def test_the_command_line_renders_until_the_bar_and_says_which_shots_missed_it(
    studio: Studio, film: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(studio.data_dir)
    code = main(
        [
            "render",
            "Retakes",
            "--shots",
            "1-2",
            "--until",
            "identity>=0.7",
            "--max-takes",
            "2",
            "--json",
            "--data-dir",
            data,
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # a shot stayed below the bar
    assert out["until"] == "identity>=0.7" and out["not_cleared"] == [2] and out["takes_rendered"] == 3
    assert [shot["cleared"] for shot in out["shots"]] == [True, False]
    assert out["shots"][1]["characters"]["Barack"]["verdict"] == "different person"
    refused = main(["render", "Retakes", "--review", "--data-dir", data])
    assert refused == 1 and "only applies with --until" in capsys.readouterr().err
    refused = main(["render", "Retakes", "--until", "identity>=0.7", "--takes", "3", "--data-dir", data])
    assert refused == 1 and "--max-takes" in capsys.readouterr().err
    assert len(takes.list_takes(studio, film, limit=100).items) == 3
