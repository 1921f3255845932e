"""The Export tab's table of trims, crossfades and title cards, turned into the cut values saved with the shots."""

from __future__ import annotations

import math

import pytest

from app.panels.export import cut_edits, cut_rows
from projects.cut import ShotCut
from projects.errors import InvalidInput


def test_every_row_becomes_its_shots_cut_values_with_blanks_meaning_none() -> None:
    rows = [
        [1, "Arrival", 0, None, None, "Gull Rock, at dawn"],
        [2, "Tea", 0.5, 1.25, 0.5, ""],
        [3, "Gulls", 0, math.nan, 0, "  "],
        [4, "Night", "", "2", math.nan, None],
    ]
    assert cut_edits(rows) == {
        1: {"cut_in": 0.0, "cut_out": None, "crossfade": None, "card": "Gull Rock, at dawn"},
        2: {"cut_in": 0.5, "cut_out": 1.25, "crossfade": 0.5, "card": ""},
        3: {"cut_in": 0.0, "cut_out": None, "crossfade": 0.0, "card": "  "},
        4: {"cut_in": 0.0, "cut_out": 2.0, "crossfade": None, "card": ""},
    }
    assert cut_edits(None) == {}


def test_the_table_shows_what_is_saved() -> None:
    shots = [ShotCut(1, 10, "Arrival"), ShotCut(2, 11, "Tea", 0.5, 1.25, 0.0, "Later")]
    assert cut_rows(shots) == [[1, "Arrival", 0.0, None, None, ""], [2, "Tea", 0.5, 1.25, 0.0, "Later"]]
    assert cut_edits(cut_rows(shots)) == {
        1: {"cut_in": 0.0, "cut_out": None, "crossfade": None, "card": ""},
        2: {"cut_in": 0.5, "cut_out": 1.25, "crossfade": 0.0, "card": "Later"},
    }


def test_a_value_that_is_not_seconds_names_its_row() -> None:
    with pytest.raises(InvalidInput, match=r"cut row 2 \(shot 2\): in, out and crossfade are seconds"):
        cut_edits([[1, "Arrival", 0, None, None, ""], [2, "Tea", "soon", None, None, ""]])
    with pytest.raises(InvalidInput, match="cut row 1: has 5 values, not 6"):
        cut_edits([[1, "Arrival", 0, None, ""]])
