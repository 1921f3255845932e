"""The cut: the approved takes in storyboard order as a timeline, each as wide as the part of it the film uses,
stale and missing shots marked, title cards and dissolves where the saved cut places them, a play-through of the
film from the approved takes (no export needed), and what an export would warn about, in the page's words.

One custom HTML component. The play-through is one ``<video>`` that plays each approved take from its in point to
its out point, then loads the next (a missing shot is skipped); a click on a segment plays from it.
"""

from __future__ import annotations

import json

from app.panels.board import file_url, html_escape
from projects.board import Board
from projects.cut import ShotCut
from projects.edit_plan import TitleCard

CSS = """
.cut-warnings { margin: 0 0 8px; padding: 8px 12px; border-radius: 8px; border: 1px solid #a86400;
  background: rgba(168, 100, 0, .08); }
.cut-warnings.clear { border-color: #1f6f3f; background: rgba(31, 111, 63, .08); }
.cut-warnings p { margin: 2px 0; }
.cut-track { display: flex; gap: 2px; overflow-x: auto; padding: 4px 0 8px; }
.seg { flex: 0 0 auto; height: 64px; border-radius: 5px; position: relative; overflow: hidden; cursor: pointer;
  background: #2a2a2e; border: 2px solid transparent; min-width: 28px; }
.seg img { width: 100%; height: 100%; object-fit: cover; display: block; }
.seg.stale { border-color: #a86400; }
.seg.missing { border: 2px dashed #9b1c1c;
  background: repeating-linear-gradient(45deg, #2a2a2e 0 6px, #3a2a2e 6px 12px); }
.seg.playing { outline: 3px solid #3b82f6; }
.seg span { position: absolute; left: 3px; bottom: 2px; font-size: 11px; color: #fff; text-shadow: 0 0 3px #000; }
.seg.trimmed span::after { content: " ✂"; }
.seg.fade-in { margin-left: -10px; -webkit-mask-image: linear-gradient(90deg, transparent, #000 14px);
  mask-image: linear-gradient(90deg, transparent, #000 14px); }
.card-seg { flex: 0 0 auto; height: 64px; border-radius: 5px; background: #111; color: #eee; font-size: 10px;
  display: flex; align-items: center; justify-content: center; text-align: center; overflow: hidden; padding: 0 4px;
  box-sizing: border-box; }
.cut-player { display: flex; gap: 10px; align-items: flex-start; }
.cut-player video { width: 480px; max-width: 100%; background: #000; border-radius: 8px; }
.cut-player button { border-radius: 6px; padding: 3px 10px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill); }
.cut-empty { padding: 1.5em; text-align: center; opacity: .7; }
"""

JS = """
let index = -1;
const player = () => element.querySelector('.cut-player video');
const list = () => JSON.parse(element.querySelector('.cut')?.dataset.playlist || '[]');
let until = null;
function show(i) {
  element.querySelectorAll('.seg').forEach((s) => s.classList.toggle('playing', Number(s.dataset.index) === i));
}
function play(i) {
  const items = list();
  while (i < items.length && !items[i]) i++;
  const video = player();
  if (!video || i >= items.length) { index = -1; show(-1); return; }
  index = i;
  show(i);
  until = items[i].to;
  video.src = items[i].src + '#t=' + items[i].from;
  video.play();
}
element.addEventListener('click', (event) => {
  const seg = event.target.closest('.seg');
  if (seg) { play(Number(seg.dataset.index)); return; }
  if (event.target.closest('[data-cmd=play]')) play(0);
  if (event.target.closest('[data-cmd=stop]')) { player()?.pause(); index = -1; show(-1); }
});
element.addEventListener('ended', (event) => {
  if (event.target instanceof HTMLVideoElement && index >= 0) play(index + 1);
}, true);
element.addEventListener('timeupdate', (event) => {
  const video = event.target;
  if (video instanceof HTMLVideoElement && index >= 0 && until !== null && video.currentTime >= until) {
    until = null;
    play(index + 1);
  }
}, true);
"""

PX_PER_SECOND = 24


def warnings(found: Board) -> list[str]:
    """What an export of this cut would carry that the filmmaker should know, one sentence each."""
    said = []
    missing = [card.number for card in found.shots if card.approved_take is None]
    stale = [card for card in found.shots if card.stale]
    if missing:
        shots = _numbers(missing)
        said.append(
            f"{shots} {'has' if len(missing) == 1 else 'have'} no approved take: the export stops there unless you "
            "choose a black placeholder or to leave them out."
        )
    for card in stale:
        said.append(f"Shot {card.number} is stale: it {card.stale_why}. Render it again, or approve another take.")
    return said


def _numbers(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"Shot {numbers[0]}"
    if len(numbers) > 8:
        return f"{len(numbers)} shots ({', '.join(map(str, numbers[:8]))}, ...)"
    return "Shots " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def cut_html(found: Board | None, shots: list[ShotCut] | None = None) -> str:
    """The cut of ``found``'s shots, laid out with their saved cut values (``shots``, by number) when given."""
    if found is None or not found.shots:
        return '<div class="cut-empty">The cut shows here once the project has shots.</div>'
    said = warnings(found)
    box = (
        '<div class="cut-warnings" id="cut-warnings">' + "".join(f"<p>{html_escape(line)}</p>" for line in said)
        if said
        else '<div class="cut-warnings clear" id="cut-warnings"><p>Every shot has an approved take that is current: '
        "the cut is ready to export.</p>"
    ) + "</div>"
    edits = {shot.number: shot for shot in shots or []}
    playlist, segments = [], []
    seconds = 0.0
    for index, card in enumerate(found.shots):
        edit = edits.get(card.number) or ShotCut(card.number, card.id, card.title)
        start = edit.cut_in if card.approved_video else 0.0
        end = edit.cut_out if card.approved_video else None
        length = max(0.0, (end if end is not None else max(card.duration, start)) - start) or card.duration
        seconds += length
        video = file_url(card.approved_video) if card.approved_video else None
        playlist.append({"src": video, "from": start, "to": end} if video else None)
        if edit.card:
            text = html_escape(edit.card.splitlines()[0])
            segments.append(
                f'<div class="card-seg" id="cut-card-{card.number}" style="width:{2 * PX_PER_SECOND}px" '
                f'title="title card: {html_escape(edit.card)}">{text}</div>'
            )
        state = "missing" if card.approved_take is None else ("stale" if card.stale else "")
        classes = " ".join(c for c in ("seg", state, "trimmed" * edit.trimmed, "fade-in" * bool(edit.crossfade)) if c)
        picture = f'<img loading="lazy" src="{html_escape(file_url(card.picture))}" alt="">' if card.picture else ""
        width = max(28, round(length * PX_PER_SECOND))
        title = f"shot {card.number}, {length:g} s" + (f", {state}" if state else "")
        if edit.trimmed:
            title += f", from {start:g} s" + (f" to {end:g} s" if end is not None else " to the end") + " of its take"
        if edit.crossfade:
            title += f", {edit.crossfade:g} s dissolve into it"
        elif edit.crossfade == 0:
            title += ", a hard cut into it"
        segments.append(
            f'<div class="{classes}" data-index="{index}" id="cut-shot-{card.number}" style="width:{width}px" '
            f'title="{html_escape(title)}">{picture}<span>{card.number}</span></div>'
        )
    cards = sum(1 for shot in edits.values() if shot.card)
    seconds += cards * TitleCard("").seconds
    cards_said = f" and {cards} title card{'s' * (cards != 1)}" if cards else ""
    player = (
        '<div class="cut-player"><video controls playsinline preload="none"></video><div>'
        f"<p>{len(found.shots)} shots{cards_said}, {seconds:g} s.</p>"
        '<button data-cmd="play">Play the cut</button> <button data-cmd="stop">Stop</button></div></div>'
    )
    track = f'<div class="cut-track" id="cut-track">{"".join(segments)}</div>'
    data = html_escape(json.dumps(playlist))
    return f'<div class="cut" data-playlist="{data}">{box}{track}{player}</div>'
