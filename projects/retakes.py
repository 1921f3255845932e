"""Retake until consistent: render takes of each shot until one keeps its whole cast, within a budget.

``render PROJECT --until identity>=0.7 --max-takes 4`` on the command line, ``film.render_until(...)`` in Python and
the Takes panel's "Retake until consistent" all call :func:`render_until`. For every shot, takes are rendered and
scored as they land; a shot stops as soon as one take clears the bar for every character in it (its per-character
score, so a two-shot where one of the two is lost does not pass), and that take is approved (or left for review).
Shots that never clear it within ``max_takes`` new takes are reported with their best take. A shot that already has
a take clearing the bar renders nothing.

Along a chain, a shot that continues from the previous one waits until that shot is settled, so it starts from the
take approved there; shots that are not chained are rendered round by round side by side (one take each per round,
queued together), so the queue renders the storyboard in order where it must and in parallel where it may.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from projects import render_queue, scoring, storyboard, takes
from projects.errors import InvalidInput
from projects.records import ShotInfo
from projects.render_queue import JobInfo, RenderSettings
from projects.studio import Studio
from storage.models import SCORE_METRICS

BAR = re.compile(r"^\s*([a-z]+)\s*>=\s*([0-9]*\.?[0-9]+)\s*$")
MAX_TAKES = 50

Renderer = Callable[[Studio, Sequence[int]], Any]


@dataclass(frozen=True)
class Bar:
    """What a take must reach: ``metric`` (a score with per-character parts, or any score) at least ``threshold``."""

    metric: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Bar:
        """``"identity>=0.7"``; the metric is one of the scores, the threshold in 0..1."""
        match = BAR.match(text or "")
        if match is None:
            raise InvalidInput(f"must look like identity>=0.7, got {text!r}", "until")
        metric, value = match[1], float(match[2])
        if metric not in SCORE_METRICS:
            raise InvalidInput(f"must name one of {', '.join(SCORE_METRICS)}, got {metric!r}", "until")
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(f"the threshold is a score in 0..1, got {value}", "until")
        return cls(metric, value)

    def __str__(self) -> str:
        return f"{self.metric}>={self.threshold:g}"


@dataclass
class ShotOutcome:
    """How one shot ended: whether a take cleared the bar, which take (the clearing one, else the best), its
    weakest character's score, each character's score and verdict, and how many takes this run rendered."""

    shot_number: int
    cleared: bool = False
    take_id: int | None = None
    score: float | None = None
    characters: dict[str, dict[str, Any]] = field(default_factory=dict)
    takes_rendered: int = 0
    approved: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "shot_number": self.shot_number,
            "cleared": self.cleared,
            "take_id": self.take_id,
            "score": None if self.score is None else round(self.score, 4),
            "characters": self.characters,
            "takes_rendered": self.takes_rendered,
            "approved": self.approved,
            "note": self.note,
        }


@dataclass(frozen=True)
class RetakeReport:
    bar: Bar
    max_takes: int
    shots: list[ShotOutcome]

    @property
    def not_cleared(self) -> list[ShotOutcome]:
        return [shot for shot in self.shots if not shot.cleared]

    @property
    def takes_rendered(self) -> int:
        return sum(shot.takes_rendered for shot in self.shots)

    def to_json(self) -> dict[str, Any]:
        return {
            "until": str(self.bar),
            "max_takes": self.max_takes,
            "takes_rendered": self.takes_rendered,
            "shots": [shot.to_json() for shot in self.shots],
            "not_cleared": [shot.shot_number for shot in self.not_cleared],
        }


def render_until(
    studio: Studio,
    project: str | int,
    bar: Bar | str,
    *,
    max_takes: int = 4,
    shots: Sequence[int] | None = None,
    settings: RenderSettings | None = None,
    seed: int | None = None,
    approve: bool = True,
    wait: Renderer,
) -> RetakeReport:
    """Render takes of ``shots`` (all when None) until each has one that clears ``bar``, at most ``max_takes``
    new takes a shot; approve the clearing take unless ``approve`` is False. ``wait`` renders a list of job ids
    and returns when they are finished (:func:`projects.render_now.wait_for_jobs`, with the caller's progress)."""
    bar = Bar.parse(bar) if isinstance(bar, str) else bar
    if isinstance(max_takes, bool) or not isinstance(max_takes, int) or not 1 <= max_takes <= MAX_TAKES:
        raise InvalidInput(f"must be between 1 and {MAX_TAKES}, got {max_takes!r}", "max-takes")
    settings = settings or RenderSettings()
    board = {shot.number: shot for shot in storyboard.all_shots(studio, project)}
    numbers = sorted(board) if shots is None else list(dict.fromkeys(shots))
    for number in numbers:
        if number not in board:
            raise InvalidInput(f"the project has no shot {number}", "shots")
    # Everything that can be refused is refused before the first take renders.
    render_queue.check_renders(studio, project, shots=numbers, settings=settings)
    outcomes = {number: ShotOutcome(number) for number in numbers}
    pending = list(numbers)
    for number in list(pending):
        if _judge_existing(studio, project, board[number], outcomes[number], bar, approve):
            pending.remove(number)
    round_index = 0
    while pending:
        ready = [n for n in pending if not (board[n].continue_from_previous and n - 1 in pending)]
        jobs = render_queue.queue_renders(
            studio,
            project,
            shots=ready,
            takes=1,
            settings=settings,
            seed=None if seed is None else (seed + round_index) % (render_queue.MAX_SEED + 1),
        )
        round_index += 1
        finished = _finished(wait(studio, [job.id for job in jobs]), jobs)
        for job in finished:
            outcome = outcomes[job.shot_number]
            outcome.takes_rendered += 1
            if job.state == "done":
                _consider(studio, job.take_id, outcome, bar, board[job.shot_number])
            if outcome.cleared:
                _settle(studio, outcome, approve)
                pending.remove(job.shot_number)
            elif outcome.takes_rendered >= max_takes:
                outcome.note = outcome.note or f"no take reached {bar} in {max_takes} take(s)"
                pending.remove(job.shot_number)
    return RetakeReport(bar, max_takes, [outcomes[number] for number in numbers])


def _finished(done: Sequence[JobInfo], queued: Sequence[JobInfo]) -> list[JobInfo]:
    by_id = {job.id: job for job in done}
    return [by_id.get(job.id, job) for job in queued]


def _judge_existing(
    studio: Studio, project: str | int, shot: ShotInfo, outcome: ShotOutcome, bar: Bar, approve: bool
) -> bool:
    """Settle a shot on the takes it already has, when one clears the bar (a stale shot's takes started from a
    picture that has changed since, so they do not count)."""
    if shot.stale or not shot.take_count:
        return False
    for scored in scoring.score_project(studio, project, shot_number=shot.number):
        _consider(studio, scored.take_id, outcome, bar, shot, scored)
    if outcome.cleared:
        outcome.note = "a take already cleared the bar"
        _settle(studio, outcome, approve)
    return outcome.cleared


def _consider(
    studio: Studio,
    take_id: int,
    outcome: ShotOutcome,
    bar: Bar,
    shot: ShotInfo,
    scored: scoring.TakeScores | None = None,
) -> None:
    """Measure one finished take against the bar; keep it as the shot's take when it clears or is the best yet."""
    if scored is None:
        # The worker scored the take as it finished; a take it could not score is scored here.
        stored = scoring.stored_scores(studio, [take_id])
        scored = stored[0] if stored and stored[0].scores else scoring.score_take(studio, take_id)
    score, characters = measure(scored, bar.metric)
    if score is None:
        # Nothing to hold the take to: no character with reference images in the shot (identity, look), or no
        # shot before it (continuity). Its first finished take is as good as any.
        if not outcome.cleared:
            outcome.cleared, outcome.take_id = True, take_id
            outcome.note = f"nothing in shot {shot.number} to measure {bar.metric} against"
        return
    if outcome.cleared:
        return
    if outcome.score is None or score > outcome.score:
        outcome.take_id, outcome.score, outcome.characters = take_id, score, characters
    if score >= bar.threshold:
        outcome.cleared, outcome.take_id, outcome.score, outcome.characters = True, take_id, score, characters


def measure(scored: scoring.TakeScores | None, metric: str) -> tuple[float | None, dict[str, dict[str, Any]]]:
    """A take's score for the bar: its weakest character's (identity and look are per character), else the score
    itself; with each character's score and verdict."""
    if scored is None or metric not in scored.scores:
        return None, {}
    details = scored.details.get(metric) or {}
    per_character = details.get("per_character") or {}
    described = details.get("characters") or {}
    characters = {
        name: {"score": round(float(value), 4), "verdict": (described.get(name) or {}).get("verdict")}
        for name, value in per_character.items()
    }
    if characters:
        return min(float(value) for value in per_character.values()), characters
    return scored.scores[metric], characters


def _settle(studio: Studio, outcome: ShotOutcome, approve: bool) -> None:
    if approve and outcome.take_id is not None:
        takes.approve_take(studio, outcome.take_id)  # a take approved already stays so, nothing rewritten
        outcome.approved = True
