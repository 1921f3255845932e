"""The cut kept with the project: for each shot, the part of its approved take the film uses, the dissolve into it
and a title card before it.

A shot's cut values are its own (they move with it when the storyboard is reordered, travel in bundles and
survive a restart). ``cut_in``/``cut_out`` are seconds into the approved take (no out point: to the take's end);
they are checked against the take's length when a film is planned, since the approved take can change.
``crossfade`` is the dissolve from whatever comes before the shot (the previous shot, or its title card) in
seconds: None leaves it to the export's crossfade, 0 makes it a hard cut. ``card`` is the text of a title card
placed just before the shot ("" for none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from projects import queries
from projects.errors import InvalidInput
from projects.storyboard import UNCHANGED
from projects.studio import Studio
from projects.validation import clean_seconds
from storage.models import MAX_CARD_TEXT, MAX_CROSSFADE_SECONDS, MAX_SHOT_SECONDS, Shot

FIELDS = ("cut_in", "cut_out", "crossfade", "card")


@dataclass(frozen=True)
class ShotCut:
    """One shot's place in the cut, as saved."""

    number: int
    shot_id: int
    title: str
    cut_in: float = 0.0
    cut_out: float | None = None
    crossfade: float | None = None
    card: str = ""

    @property
    def trimmed(self) -> bool:
        return self.cut_in > 0 or self.cut_out is not None

    @property
    def edited(self) -> bool:
        return self.trimmed or self.crossfade is not None or bool(self.card)

    def to_json(self) -> dict[str, Any]:
        return {
            "shot": self.number,
            "title": self.title,
            "in": self.cut_in,
            "out": self.cut_out,
            "crossfade": self.crossfade,
            "card": self.card,
        }


@dataclass(frozen=True)
class CutValues:
    """Checked values, before they touch the database."""

    cut_in: float = 0.0
    cut_out: float | None = None
    crossfade: float | None = None
    card: str = ""


def clean_cut(
    cut_in: Any = 0.0, cut_out: Any = None, crossfade: Any = None, card: Any = "", *, where: str = "cut"
) -> CutValues:
    """The four values checked: seconds that are finite numbers in range, an out point after the in point, a
    crossfade of at most a minute, a card of at most 500 characters. Anything else is refused, naming ``where``."""
    start = clean_seconds(0.0 if cut_in is None else cut_in, f"{where}: in point", MAX_SHOT_SECONDS, allow_zero=True)
    if start >= MAX_SHOT_SECONDS:
        raise InvalidInput(f"is {start:g} s; a shot lasts at most {MAX_SHOT_SECONDS:g} s", f"{where}: in point")
    end = None if cut_out is None else clean_seconds(cut_out, f"{where}: out point", MAX_SHOT_SECONDS)
    if end is not None and end <= start:
        raise InvalidInput(f"{end:g} s is not after the in point ({start:g} s)", f"{where}: out point")
    fade = (
        None
        if crossfade is None
        else clean_seconds(crossfade, f"{where}: crossfade", MAX_CROSSFADE_SECONDS, allow_zero=True)
    )
    if card is None:
        card = ""
    if not isinstance(card, str):
        raise InvalidInput(f"must be text, got {type(card).__name__}", f"{where}: title card")
    text = card.strip()
    if len(text) > MAX_CARD_TEXT:
        raise InvalidInput(f"is {len(text)} characters; the limit is {MAX_CARD_TEXT}", f"{where}: title card")
    if "\x00" in text:
        raise InvalidInput("contains a NUL character", f"{where}: title card")
    return CutValues(start, end, fade, text)


def _info(shot: Shot) -> ShotCut:
    return ShotCut(shot.position, shot.id, shot.title, shot.cut_in, shot.cut_out, shot.cut_crossfade, shot.cut_title)


def the_cut(studio: Studio, project: str | int) -> list[ShotCut]:
    """Every shot's cut values, in storyboard order."""
    with studio.read() as session:
        row = queries.find_project(session, project)
        shots = session.scalars(select(Shot).where(Shot.project_id == row.id).order_by(Shot.position)).all()
        return [_info(shot) for shot in shots]


def set_cut(
    studio: Studio,
    project: str | int,
    shot: int,
    *,
    cut_in: Any = UNCHANGED,
    cut_out: Any = UNCHANGED,
    crossfade: Any = UNCHANGED,
    card: Any = UNCHANGED,
) -> ShotCut:
    """Change some of shot number ``shot``'s cut values; the others keep theirs (``cut_out=None`` keeps the take
    to its end, ``crossfade=None`` leaves the dissolve to the export, ``card=""`` removes the card)."""
    given = {"cut_in": cut_in, "cut_out": cut_out, "crossfade": crossfade, "card": card}
    return save_cut(studio, project, {shot: {k: v for k, v in given.items() if v is not UNCHANGED}})[0]


def save_cut(studio: Studio, project: str | int, edits: Mapping[int, Mapping[str, Any]]) -> list[ShotCut]:
    """Save the cut values of several shots (by number) at once: every one is checked first, and one that is
    refused changes nothing. Returns the saved shots' values, in the order given."""
    if not isinstance(edits, Mapping):
        raise InvalidInput("must map shot numbers to their cut values", "cut")
    with studio.write() as session:
        row = queries.find_project(session, project)
        planned = []
        for number, values in edits.items():
            if isinstance(number, bool) or not isinstance(number, int):
                raise InvalidInput(f"shot numbers are whole numbers, got {number!r}", "cut")
            if not isinstance(values, Mapping) or set(values) - set(FIELDS):
                unknown = sorted(set(values) - set(FIELDS)) if isinstance(values, Mapping) else values
                raise InvalidInput(f"unknown cut values {unknown!r}; known: {', '.join(FIELDS)}", f"shot {number}")
            target = queries.shot_at(session, row, number)
            current = {
                "cut_in": target.cut_in,
                "cut_out": target.cut_out,
                "crossfade": target.cut_crossfade,
                "card": target.cut_title,
            }
            merged = current | dict(values)
            planned.append((target, clean_cut(**merged, where=f"shot {number}")))
        for target, values in planned:
            target.cut_in, target.cut_out = values.cut_in, values.cut_out
            target.cut_crossfade, target.cut_title = values.crossfade, values.card
        session.flush()
        return [_info(target) for target, _ in planned]
