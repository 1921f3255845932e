"""The cut on the Export tab: the approved takes in order, stale and missing shots marked, the play-through's
list of videos, and the export's warnings in the page's words (from a real studio)."""

from __future__ import annotations

import html
import json
import re

from app.panels.cut import cut_html, warnings
from projects import cut, render_queue, storyboard, takes
from projects import project as projects
from projects.board import board
from projects.studio import Studio
from projects.worker import RenderWorker


def test_the_cut_marks_missing_and_stale_shots_and_plays_the_approved_takes(studio: Studio) -> None:
    projects.create_project(studio, "Harbour", width=96, height=64, fps=8)
    for number in range(1, 5):
        storyboard.add_shot(
            studio, "Harbour", title=f"Pier {number}", prompt="beat", duration=1.5, continue_from_previous=number == 3
        )
    render_queue.queue_renders(studio, "Harbour", shots=[1, 2], takes=2)
    with RenderWorker(studio) as worker:
        worker.run(once=True)
        first = {n: takes.list_takes(studio, "Harbour", shot_number=n).items for n in (1, 2)}
        for number in (1, 2):
            takes.approve_take(studio, first[number][0].id)
        render_queue.queue_renders(studio, "Harbour", shots=[3], takes=1)
        worker.run(once=True)
    takes.approve_take(studio, takes.list_takes(studio, "Harbour", shot_number=3).items[0].id)
    takes.approve_take(studio, first[2][1].id)  # shot 3 continued from shot 2's other take: now stale

    found = board(studio, "Harbour")
    said = warnings(found)
    page = cut_html(found)

    assert said == [
        "Shot 4 has no approved take: the export stops there unless you choose a black placeholder or to leave them "
        "out.",
        "Shot 3 is stale: it continues from shot 2, whose approved take changed since. Render it again, or approve "
        "another take.",
    ]
    assert re.search(r'class="seg stale"[^>]*id="cut-shot-3"', page)
    assert re.search(r'class="seg missing"[^>]*id="cut-shot-4"', page)
    assert re.search(r'class="seg"[^>]*id="cut-shot-1" style="width:36px"', page)  # 1.5 s at 24 px a second
    playlist = json.loads(html.unescape(re.search(r'data-playlist="([^"]*)"', page).group(1)))
    assert len(playlist) == 4 and playlist[3] is None
    assert all(item["src"].startswith("gradio_api/file=") and item["src"].endswith(".mp4") for item in playlist[:3])
    assert [(item["from"], item["to"]) for item in playlist[:3]] == [(0, None)] * 3
    assert "4 shots, 6 s." in page

    # With the saved cut: shot 1 plays 0.5-1.0 s of its take and dissolves into shot 2, which has a card first.
    cut.save_cut(studio, "Harbour", {1: {"cut_in": 0.5, "cut_out": 1.0}, 2: {"crossfade": 0.5, "card": "Tea\nlater"}})
    page = cut_html(found, cut.the_cut(studio, "Harbour"))
    assert re.search(r'class="seg trimmed"[^>]*id="cut-shot-1" style="width:28px"', page)  # 0.5 s, the narrowest
    assert re.search(r'class="card-seg" id="cut-card-2"[^>]*title="title card: Tea\nlater">Tea</div>', page)
    assert re.search(r'class="seg fade-in"[^>]*id="cut-shot-2"[^>]*title="[^"]*0.5 s dissolve into it"', page)
    playlist = json.loads(html.unescape(re.search(r'data-playlist="([^"]*)"', page).group(1)))
    assert (playlist[0]["from"], playlist[0]["to"]) == (0.5, 1.0)
    assert "4 shots and 1 title card, 7 s." in page  # 0.5 + 1.5 + 1.5 + 1.5 s, and the 2 s card


def test_a_cut_ready_to_export_says_so(studio: Studio) -> None:
    projects.create_project(studio, "Harbour", width=96, height=64, fps=8)
    storyboard.add_shot(studio, "Harbour", title="Pier", prompt="beat", duration=1.0)
    render_queue.queue_renders(studio, "Harbour", takes=1)
    with RenderWorker(studio) as worker:
        worker.run(once=True)
    takes.approve_take(studio, takes.list_takes(studio, "Harbour", shot_number=1).items[0].id)
    found = board(studio, "Harbour")
    assert warnings(found) == []
    assert "the cut is ready to export" in cut_html(found)
    assert "The cut shows here" in cut_html(None)
