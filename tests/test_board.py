"""The board: every shot as a card, from a real studio (SQLite file, media store, the animatic rendering)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from app.panels.board import board_html, card_html
from projects import project as projects
from projects import render_queue, storyboard, takes
from projects.board import board, render_from_board
from projects.errors import InvalidInput
from projects.storyboard_file import import_storyboard
from projects.studio import Studio
from projects.worker import RenderWorker
from storage.models import Job, Take, TakeScore, utcnow


def make(studio: Studio, shots: int = 4, name: str = "Harbour") -> None:
    projects.create_project(studio, name, width=96, height=64, fps=8)
    for number in range(1, shots + 1):
        storyboard.add_shot(
            studio,
            name,
            title=f"Pier {number}",
            prompt=f"the keeper walks, beat {number}",
            duration=1.0,
            continue_from_previous=number == 3,
        )


def run_all(studio: Studio) -> None:
    with RenderWorker(studio) as worker:
        worker.run(once=True)


def takes_of(studio: Studio, number: int) -> list[Any]:
    return takes.list_takes(studio, "Harbour", shot_number=number).items


def test_cards_show_approval_staleness_scores_and_the_take_strip(studio: Studio) -> None:
    make(studio)
    render_queue.queue_renders(studio, "Harbour", shots=[1, 2], takes=2)
    run_all(studio)
    for number in (1, 2):
        takes.approve_take(studio, takes_of(studio, number)[0].id)
    render_queue.queue_renders(studio, "Harbour", shots=[3], takes=1)  # shot 3 continues from shot 2's take 1
    run_all(studio)
    takes.approve_take(studio, takes_of(studio, 3)[0].id)
    with studio.write() as session:  # scores as the scorer writes them: the best identity of a shot is shown
        for take_id, value in ((takes_of(studio, 1)[0].id, 0.41), (takes_of(studio, 1)[1].id, 0.83)):
            session.add(TakeScore(take_id=take_id, embedder="test", metric="identity", value=value, details={}))
    # Approving another take of shot 2 makes shot 3 stale: it no longer continues from the approved take.
    takes.approve_take(studio, takes_of(studio, 2)[1].id)

    shown = board(studio, "Harbour")
    cards = {card.number: card for card in shown.shots}

    assert [card.number for card in shown.shots] == [1, 2, 3, 4]
    assert cards[1].approved_take == 1 and cards[1].best_identity == pytest.approx(0.83)
    assert [t.number for t in cards[1].takes] == [1, 2] and cards[1].takes[0].approved
    assert cards[1].takes[1].identity == pytest.approx(0.83)
    assert cards[2].approved_take == 2 and not cards[2].stale
    assert cards[3].stale and cards[3].approved_take == 1
    assert cards[3].stale_why == "continues from shot 2, whose approved take changed since"
    assert cards[4].approved_take is None and cards[4].take_count == 0 and cards[4].picture is None
    assert all(card.picture is not None and card.picture.is_file() for card in shown.shots[:3])
    assert shown.totals == {
        "shots": 4,
        "approved": 3,
        "stale": 1,
        "missing": 1,
        "rendering": 0,
        "queued": 0,
        "failed": 0,
        "seconds": 4.0,
    }


def test_a_rendering_shot_shows_its_progress_and_time_left_and_a_failed_one_says_so(studio: Studio) -> None:
    make(studio, shots=3)
    (running, waiting) = render_queue.queue_renders(studio, "Harbour", shots=[1, 2], takes=1)
    failing = render_queue.queue_renders(studio, "Harbour", shots=[3], takes=1)[0]
    with studio.write() as session:
        job = session.get(Job, running.id)
        job.state, job.progress_stage, job.progress_step, job.progress_total = "running", "backbone", 10, 40
        job.started_at = utcnow() - timedelta(seconds=20)
        job.take.status = "running"
        ended = session.get(Job, failing.id)
        ended.state, ended.error = "failed", "out of memory"
        ended.take.status = "failed"

    cards = {card.number: card for card in board(studio, "Harbour").shots}

    assert cards[1].rendering is not None
    assert (cards[1].rendering["step"], cards[1].rendering["total"]) == (10, 40)
    assert 55 <= cards[1].rendering["seconds_left"] <= 65  # 20 s for 10 steps: about 60 s for the last 30
    assert cards[2].queued == 1 and cards[2].rendering is None
    assert cards[3].failed and not cards[1].failed
    page = card_html(cards[1])
    assert "rendering 10/40 · 1 min left" in page and 'style="width:25%"' in page
    assert "last take failed" in card_html(cards[3])
    del waiting


def test_the_board_reads_any_storyboard_in_the_same_few_queries(studio: Studio) -> None:
    make(studio, shots=5, name="Short")
    make(studio, shots=60, name="Long")
    render_queue.queue_renders(studio, "Short", takes=1)
    render_queue.queue_renders(studio, "Long", takes=1)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(studio.db.engine, "before_cursor_execute", count)
    try:
        board(studio, "Short")
        short = len(statements)
        statements.clear()
        board(studio, "Long")
        long = len(statements)
    finally:
        event.remove(studio.db.engine, "before_cursor_execute", count)
    assert long == short <= 16, statements


def test_render_from_the_board_queues_one_shot_what_is_needed_or_all(studio: Studio) -> None:
    make(studio)
    one = render_from_board(studio, "Harbour", "shot", shot=2, takes=2)
    assert [(job.shot_number, job.take_number) for job in one] == [(2, 1), (2, 2)]
    run_all(studio)
    takes.approve_take(studio, takes_of(studio, 2)[0].id)

    needed = render_from_board(studio, "Harbour", "needed", takes=1)
    assert sorted(job.shot_number for job in needed) == [1, 3, 4]  # shot 2 has an approved take that is current
    everything = render_from_board(studio, "Harbour", "all", takes=1)
    assert sorted(job.shot_number for job in everything) == [1, 2, 3, 4]

    with pytest.raises(InvalidInput, match="scope: must be one of shot, needed, all"):
        render_from_board(studio, "Harbour", "some")
    with pytest.raises(InvalidInput, match="name the shot"):
        render_from_board(studio, "Harbour", "shot")
    with pytest.raises(InvalidInput, match="takes"):
        render_from_board(studio, "Harbour", "shot", shot=1, takes=0)
    with studio.read() as session:
        assert session.scalar(select(Take).where(Take.take_number > 3)) is None  # the refusals queued nothing


def test_nothing_needed_says_so(studio: Studio) -> None:
    make(studio, shots=1)
    render_from_board(studio, "Harbour", "all", takes=1)
    run_all(studio)
    takes.approve_take(studio, takes_of(studio, 1)[0].id)
    with pytest.raises(InvalidInput, match="nothing to render"):
        render_from_board(studio, "Harbour", "needed")


def test_the_cards_escape_what_the_user_wrote(studio: Studio) -> None:
    projects.create_project(studio, "Harbour", width=96, height=64, fps=8)
    storyboard.add_shot(studio, "Harbour", title='<img src=x onerror="alert(1)">', prompt="x", duration=1.0)

    page = board_html(board(studio, "Harbour"))

    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert re.search(r'<article class="card\s*" draggable="true" data-shot="1" id="shot-card-1">', page)
    assert "no approved take" in page and "no picture yet" in page


def test_a_thousand_shots_are_one_page_of_cards(studio: Studio, tmp_path: Path) -> None:
    shots = [{"title": f"Beat {n}", "prompt": f"beat {n}", "duration": 1} for n in range(1, 1001)]
    path = tmp_path / "epic.json"
    path.write_text(json.dumps({"project": "Epic", "shots": shots}))
    import_storyboard(studio, path)

    found = board(studio, "Epic")
    page = board_html(found)
    assert len(found.shots) == 1000 and page.count('<article class="card') == 1000
    assert 'id="shot-card-1000"' in page
    assert found.totals["missing"] == 1000
