"""Compare takes: two to four of a shot's takes side by side, playing together, each with its scores and why under
it (which character, in how many frames their face was found, from when it was lost), any of them approvable, and
the approved one marked.

One custom HTML component: the videos are plain ``<video>`` elements kept in step by their own events (a play,
pause or seek of one is done to all), with no timer or animation loop. An Approve button reaches Python as a click
event carrying the take's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.panels.board import file_url, html_escape

MAX_COMPARED = 4

CSS = """
.cmp-controls { display: flex; gap: 6px; margin-bottom: 8px; }
.cmp-controls button, .cmp figcaption button { border-radius: 6px; padding: 3px 10px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill); }
.cmp figcaption button.primary { background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); }
.cmp-grid { display: grid; gap: 10px; grid-template-columns: repeat(var(--n), minmax(0, 1fr)); }
.cmp { margin: 0; border: 2px solid var(--border-color-primary); border-radius: 10px; overflow: hidden;
  background: var(--block-background-fill); }
.cmp.approved { border-color: #22a35a; }
.cmp video { width: 100%; display: block; background: #000; aspect-ratio: 16 / 9; }
.cmp figcaption { padding: 8px 10px; display: flex; flex-direction: column; gap: 4px; font-size: .9em; }
.cmp .head { display: flex; justify-content: space-between; align-items: center; gap: 6px; }
.cmp .badge { font-size: .78em; border-radius: 999px; padding: 1px 8px; background: #1f6f3f; color: #fff; }
.cmp .scores { font-variant-numeric: tabular-nums; }
.cmp .why { opacity: .85; }
.cmp .why.low { color: #c0392b; opacity: 1; }
.cmp-empty { padding: 1.5em; text-align: center; opacity: .7; }
"""

JS = """
const videos = () => [...element.querySelectorAll('.cmp video')];
let leading = false;
element.addEventListener('click', (event) => {
  const command = event.target.closest('[data-cmd]');
  if (command) {
    const all = videos();
    if (command.dataset.cmd === 'play') {
      const t = all.length ? all[0].currentTime : 0;
      all.forEach((v) => { v.currentTime = t; v.play(); });
    } else if (command.dataset.cmd === 'pause') {
      all.forEach((v) => v.pause());
    } else if (command.dataset.cmd === 'restart') {
      all.forEach((v) => { v.currentTime = 0; v.play(); });
    }
    return;
  }
  const button = event.target.closest('[data-action=approve]');
  const figure = event.target.closest('.cmp');
  if (button && figure) trigger('click', {action: 'approve', take: Number(figure.dataset.take)});
});
// A play, pause or seek on one video's own controls is done to the others too.
for (const kind of ['play', 'pause', 'seeked']) {
  element.addEventListener(kind, (event) => {
    if (leading || !(event.target instanceof HTMLVideoElement)) return;
    leading = true;
    const source = event.target;
    videos().filter((v) => v !== source).forEach((v) => {
      if (Math.abs(v.currentTime - source.currentTime) > 0.05) v.currentTime = source.currentTime;
      if (kind === 'play' && v.paused) v.play();
      if (kind === 'pause' && !v.paused) v.pause();
    });
    leading = false;
  }, true);
}
"""


def why(details: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each character's identity in words, with the frames it rests on: ``(line, low)`` pairs."""
    characters = (details.get("identity") or {}).get("characters") or {}
    lines = []
    for name, part in characters.items():
        verdict = str(part.get("verdict", ""))
        seen, unseen = part.get("frames_with_face"), part.get("frames_without_face")
        line = f"{name}: {verdict}"
        if isinstance(part.get("score"), int | float) and part.get("face", True):
            line += f" ({part['score']:.2f})"
        if isinstance(seen, int) and isinstance(unseen, int) and seen + unseen:
            line += f", face in {seen} of {seen + unseen} frames"
        if part.get("lost_from") is not None:
            line += f", lost from {part['lost_from']:g} s"
        lines.append((line, verdict not in ("same person", "whole subject")))
    return lines


def compare_html(takes: Sequence[Any], scores: dict[int, Any]) -> str:
    """The chosen takes (``TakeInfo``, done) side by side, with ``scores`` (``TakeScores`` by take id) under each."""
    chosen = [take for take in takes if take.video_path][:MAX_COMPARED]
    if not chosen:
        return '<div class="cmp-empty">Choose two to four finished takes to compare them side by side.</div>'
    figures = []
    for take in chosen:
        scored = scores.get(take.id)
        numbers = ""
        lines: list[tuple[str, bool]] = []
        if scored is not None:
            parts = [
                f"{metric} {scored.scores[metric]:.2f}"
                for metric in ("identity", "look", "continuity", "stability")
                if scored.scores.get(metric) is not None
            ]
            overall = scored.overall
            numbers = " · ".join(parts) + (f" · <b>overall {overall:.2f}</b>" if overall is not None else "")
            lines = why(scored.details)
        else:
            numbers = "not scored yet"
        said = "".join(f'<div class="why{" low" if low else ""}">{html_escape(line)}</div>' for line, low in lines)
        badge = '<span class="badge">approved</span>' if take.approved else ""
        button = "" if take.approved else '<button class="primary" data-action="approve">Approve</button>'
        figures.append(
            f'<figure class="cmp{" approved" if take.approved else ""}" data-take="{take.id}" '
            f'id="compare-take-{take.take_number}">'
            f'<video src="{html_escape(file_url(take.video_path))}" preload="auto" muted loop playsinline controls>'
            "</video>"
            f'<figcaption><div class="head"><b>take {take.take_number}</b> <small>seed {take.seed}</small>'
            f"{badge}{button}</div>"
            f'<div class="scores">{numbers}</div>{said}</figcaption></figure>'
        )
    controls = (
        '<div class="cmp-controls"><button data-cmd="play">Play together</button>'
        '<button data-cmd="pause">Pause</button><button data-cmd="restart">From the start</button></div>'
    )
    return f'{controls}<div class="cmp-grid" style="--n:{len(chosen)}">{"".join(figures)}</div>'


def default_choice(done: Sequence[Any], current: Sequence[int] | None, seen: Sequence[int] | None) -> list[int]:
    """Which takes to compare: those chosen before that still exist, with takes that landed since added while there
    is room; at first, the approved take and the newest ones, up to four."""
    ids = [take.id for take in done]
    if current:
        kept = [take_id for take_id in current if take_id in ids]
        new = [take_id for take_id in reversed(ids) if take_id not in set(seen or ())]
        for take_id in new:
            if len(kept) >= MAX_COMPARED:
                break
            if take_id not in kept:
                kept.append(take_id)
        return kept
    approved = [take.id for take in done if take.approved]
    newest = [take_id for take_id in reversed(ids) if take_id not in approved]
    return (approved + newest)[:MAX_COMPARED]
