"""Trims and title cards typed into the Export tab's table, turned into the export's options."""

from __future__ import annotations

import math

import pytest

from app.panels.export import cut_edits
from projects.edit_plan import TitleCard, Trim
from projects.errors import InvalidInput


def test_rows_become_trims_and_cards_where_something_was_typed() -> None:
    rows = [
        [1, "Arrival", 0, None, "Gull Rock, at dawn"],
        [2, "Tea", 0.5, 1.25, ""],
        [3, "Gulls", 0, math.nan, "  "],
        [4, "Night", "", "2", None],
    ]
    trims, cards = cut_edits(rows)
    assert trims == {2: Trim(0.5, 1.25), 4: Trim(0.0, 2.0)}
    assert cards == (TitleCard("Gull Rock, at dawn", before_shot=1),)
    assert cut_edits(None) == ({}, ())


def test_a_value_that_is_not_seconds_names_its_row() -> None:
    with pytest.raises(InvalidInput, match="cuts row 2: in and out points are seconds"):
        cut_edits([[1, "Arrival", 0, None, ""], [2, "Tea", "soon", None, ""]])
