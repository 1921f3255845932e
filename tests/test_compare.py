"""Comparing takes: which are compared as takes land, and the words each score is shown with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.panels.compare import compare_html, default_choice, why


@dataclass
class Take:
    id: int
    take_number: int
    approved: bool = False
    seed: int = 7
    video_path: Path | None = Path("/media/take.mp4")


@dataclass
class Scored:
    scores: dict[str, float]
    details: dict
    overall: float | None = None


def test_at_first_the_approved_take_and_the_newest_are_compared() -> None:
    done = [Take(1, 1), Take(2, 2, approved=True), Take(3, 3), Take(4, 4), Take(5, 5), Take(6, 6)]
    assert default_choice(done, None, None) == [2, 6, 5, 4]
    assert default_choice(done[:1], None, None) == [1]


def test_a_choice_is_kept_and_takes_that_land_join_it_while_there_is_room() -> None:
    done = [Take(1, 1), Take(2, 2), Take(3, 3)]
    assert default_choice(done, [1, 3], [1, 2, 3]) == [1, 3]  # nothing new: the user's choice stays
    landed = [*done, Take(4, 4), Take(5, 5), Take(6, 6)]
    assert default_choice(landed, [1, 3], [1, 2, 3]) == [1, 3, 6, 5]  # the newest fill the room, no more
    assert default_choice([Take(3, 3)], [1, 3], [1, 2, 3]) == [3]  # deleted takes leave the comparison


def test_why_says_which_character_and_in_how_many_frames() -> None:
    details = {
        "identity": {
            "characters": {
                "Mara": {"score": 0.82, "verdict": "same person", "frames_with_face": 7, "frames_without_face": 1},
                "Tom": {
                    "score": 0.31,
                    "verdict": "different person",
                    "frames_with_face": 3,
                    "frames_without_face": 5,
                    "lost_from": 1.5,
                },
                "Ada": {"score": 0.0, "verdict": "no face visible", "frames_with_face": 0, "frames_without_face": 8},
            }
        }
    }
    assert why(details) == [
        ("Mara: same person (0.82), face in 7 of 8 frames", False),
        ("Tom: different person (0.31), face in 3 of 8 frames, lost from 1.5 s", True),
        ("Ada: no face visible (0.00), face in 0 of 8 frames", True),
    ]
    assert why({}) == []


def test_the_comparison_marks_the_approved_take_and_offers_to_approve_the_others() -> None:
    takes = [Take(10, 1, approved=True), Take(11, 2), Take(12, 3, video_path=None)]
    unsure = {"identity": {"characters": {"<b>": {"verdict": "unsure"}}}}
    scores = {11: Scored({"identity": 0.5, "look": 0.25}, unsure)}
    page = compare_html(takes, scores)
    assert page.count('<figure class="cmp') == 2  # a take without a video is left out
    assert 'class="cmp approved" data-take="10"' in page and "not scored yet" in page
    assert page.count('data-action="approve"') == 1 and 'data-take="11"' in page
    assert "identity 0.50 · look 0.25" in page and "&lt;b&gt;: unsure" in page and "<b>:" not in page
    assert "--n:2" in page
    assert "Choose two to four" in compare_html([], {})
