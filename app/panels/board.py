"""The board: every shot as a card, rendered from where it is seen.

The cards are one custom HTML component (``gr.HTML`` with its own CSS and JS) built here from
:func:`projects.board.board`, escaped, so a storyboard of a thousand shots is one string the browser paints at
once (images load lazily, off-screen cards are skipped by ``content-visibility``). A card's buttons and a drag
from one card onto another reach Python as one event with the action and the shot's number; its timer runs only
while something of the project is queued or rendering, so an idle page asks the server nothing.
"""

from __future__ import annotations

import hashlib
import html
import time
from typing import Any
from urllib.parse import quote

import gradio as gr

from app.panels.common import Context, bump, need_project, user_errors
from pipelines.registry import backend_names
from projects import storyboard
from projects.board import Board, ShotCard, board, render_from_board
from projects.render_queue import RenderSettings

TICK_SECONDS = 2.0

CSS = """
.board-totals { display: flex; gap: 1.2em; flex-wrap: wrap; margin: 0 0 .6em; font-size: .95em; }
.board-totals b { font-variant-numeric: tabular-nums; }
.board-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 12px; }
.board-empty { padding: 2em; text-align: center; opacity: .7; }
.card { border: 1px solid var(--border-color-primary); border-radius: 10px; overflow: hidden;
  background: var(--block-background-fill); content-visibility: auto; contain-intrinsic-size: 240px 330px;
  display: flex; flex-direction: column; }
.card.dragging { opacity: .4; }
.card.drop { outline: 2px dashed var(--color-accent); }
.card .pic { position: relative; aspect-ratio: 16 / 9; background: #2a2a2e; cursor: pointer; }
.card .pic img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; display: block; }
.card .pic .none { position: absolute; inset: 0; display: grid; place-items: center; color: #aaa; font-size: .85em; }
.card .num { position: absolute; left: 6px; top: 6px; background: rgba(0,0,0,.7); color: #fff;
  border-radius: 6px; padding: 1px 7px; font-weight: 600; }
.card .body { padding: 8px 10px 10px; display: flex; flex-direction: column; gap: 6px; flex: 1; }
.card .title { font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.card .meta { font-size: .85em; opacity: .8; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.card .badges { display: flex; flex-wrap: wrap; gap: 4px; }
.badge { font-size: .78em; border-radius: 999px; padding: 1px 8px; border: 1px solid transparent; }
.badge.ok { background: #1f6f3f; color: #fff; }
.badge.stale { background: #a86400; color: #fff; }
.badge.run { background: #1d4f91; color: #fff; }
.badge.fail { background: #9b1c1c; color: #fff; }
.badge.wait, .badge.none, .badge.id { border-color: var(--border-color-primary); }
.card .bar { height: 4px; background: var(--border-color-primary); border-radius: 2px; overflow: hidden; }
.card .bar i { display: block; height: 100%; background: #3b82f6; }
.card .strip { display: flex; gap: 4px; min-height: 34px; }
.card .strip .take { width: 54px; height: 32px; border-radius: 4px; overflow: hidden; cursor: pointer;
  border: 2px solid transparent; background: #333; position: relative; padding: 0; }
.card .strip .take img { width: 100%; height: 100%; object-fit: cover; display: block; }
.card .strip .take.approved { border-color: #22a35a; }
.card .strip .take.failed { border-color: #c0392b; }
.card .strip .take span { position: absolute; right: 2px; bottom: 0; font-size: 10px; color: #fff;
  text-shadow: 0 0 2px #000; }
.card .actions { display: flex; gap: 6px; margin-top: auto; }
.card .actions button { flex: 1; border-radius: 6px; padding: 3px 6px; font-size: .85em; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill); }
.card .actions button.primary { background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); }
"""

# Clicks and drags reach Python as one "click" event carrying {action, shot, to}; listeners sit on the
# component's element, so they survive every re-render of the cards.
JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('[data-action]');
  const card = event.target.closest('.card');
  if (!button || !card) return;
  trigger('click', {action: button.dataset.action, shot: Number(card.dataset.shot),
                    take: button.dataset.take ? Number(button.dataset.take) : null});
});
let dragged = null;
element.addEventListener('dragstart', (event) => {
  const card = event.target.closest('.card');
  if (!card) return;
  dragged = Number(card.dataset.shot);
  card.classList.add('dragging');
  event.dataTransfer.effectAllowed = 'move';
  event.dataTransfer.setData('text/plain', String(dragged));
});
element.addEventListener('dragend', (event) => {
  element.querySelectorAll('.card.dragging, .card.drop').forEach((c) => c.classList.remove('dragging', 'drop'));
});
element.addEventListener('dragover', (event) => {
  const card = event.target.closest('.card');
  if (!card || dragged === null) return;
  event.preventDefault();
  element.querySelectorAll('.card.drop').forEach((c) => c.classList.remove('drop'));
  card.classList.add('drop');
});
element.addEventListener('drop', (event) => {
  const card = event.target.closest('.card');
  if (!card || dragged === null) return;
  event.preventDefault();
  const to = Number(card.dataset.shot);
  if (to !== dragged) trigger('click', {action: 'move', shot: dragged, to: to});
  dragged = null;
});
"""


def file_url(path: Any) -> str:
    """The address the page loads a stored file from (the server allows the media folder)."""
    return "gradio_api/file=" + quote(str(path))


def html_escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def seconds_in_words(seconds: float | None, *, left: bool = True) -> str:
    """``42 s left``, ``3 min left``, ``2.5 h`` (empty where unknown)."""
    if seconds is None:
        return ""
    if seconds < 60:
        said = f"{int(seconds)} s"
    elif seconds < 5400:
        said = f"{round(seconds / 60)} min"
    else:
        said = f"{seconds / 3600:.1f} h"
    return f"{said} left" if left else said


def card_html(card: ShotCard) -> str:
    """One shot's card (every text from the storyboard escaped: a title is the user's)."""
    state = " ".join(
        name
        for name, on in (
            ("approved", card.approved_take is not None),
            ("stale", card.stale),
            ("rendering", card.rendering is not None),
            ("failed", card.failed),
        )
        if on
    )
    picture = (
        f'<img loading="lazy" decoding="async" src="{html_escape(file_url(card.picture))}" alt="">'
        if card.picture
        else '<div class="none">no picture yet</div>'
    )
    badges = []
    if card.approved_take is not None:
        badges.append(f'<span class="badge ok">approved · take {card.approved_take}</span>')
    else:
        badges.append('<span class="badge none">no approved take</span>')
    if card.stale:
        why = html_escape(card.stale_why)
        badges.append(f'<span class="badge stale" title="{why}">stale: {why}</span>')
    bar = ""
    if card.rendering is not None:
        step, total = card.rendering["step"], card.rendering["total"]
        done = f" {step}/{total}" if total else ""
        left = seconds_in_words(card.rendering["seconds_left"])
        badges.append(f'<span class="badge run">rendering{done}{" · " + left if left else ""}</span>')
        share = 100 * step / total if total else 0
        bar = f'<div class="bar" title="{step} of {total}"><i style="width:{share:.0f}%"></i></div>'
    if card.queued:
        badges.append(f'<span class="badge wait">{card.queued} queued</span>')
    if card.failed:
        badges.append('<span class="badge fail">last take failed</span>')
    if card.best_identity is not None:
        badges.append(
            f'<span class="badge id" title="best identity score of its takes">identity {card.best_identity:.2f}</span>'
        )
    strip = "".join(
        f'<button class="take{" approved" if t.approved else ""}{" failed" if t.status == "failed" else ""}" '
        f'data-action="take" data-take="{t.id}" title="take {t.number} · {html_escape(t.status)}'
        f'{f" · identity {t.identity:.2f}" if t.identity is not None else ""}">'
        + (f'<img loading="lazy" src="{html_escape(file_url(t.thumbnail))}" alt="">' if t.thumbnail else "")
        + f"<span>{t.number}</span></button>"
        for t in card.takes
    )
    title = html_escape(card.title)
    people = ", ".join(card.characters)
    meta = f"{card.duration:g} s · {card.camera}" + (f" · {people}" if people else "")
    return (
        f'<article class="card {state}" draggable="true" data-shot="{card.number}" id="shot-card-{card.number}">'
        f'<div class="pic" data-action="open">{picture}<span class="num">{card.number}</span></div>'
        f'<div class="body"><div class="title" title="{title}">{title or "untitled"}</div>'
        f'<div class="meta" title="{html_escape(meta)}">{html_escape(meta)}</div>'
        f'<div class="badges">{"".join(badges)}</div>{bar}'
        f'<div class="strip">{strip}</div>'
        f'<div class="actions"><button class="primary" data-action="render">Render</button>'
        f'<button data-action="open">Edit</button><button data-action="takes">Takes ({card.take_count})</button>'
        "</div></div></article>"
    )


def board_html(found: Board | None) -> str:
    if found is None:
        return '<div class="board-empty">Open or create a project (Projects tab) to see its board.</div>'
    if not found.shots:
        return (
            f'<div class="board-empty">{html_escape(found.project)} has no shots yet: import a storyboard '
            "(Projects tab) or add shots (Storyboard tab).</div>"
        )
    t = found.totals
    totals = (
        f'<div class="board-totals" id="board-totals"><span><b>{t["shots"]}</b> shots, {t["seconds"]:g} s</span>'
        f"<span><b>{t['approved']}</b> approved</span><span><b>{t['missing']}</b> missing</span>"
        f"<span><b>{t['stale']}</b> stale</span><span><b>{t['rendering']}</b> rendering</span>"
        f"<span><b>{t['queued']}</b> queued</span><span><b>{t['failed']}</b> failed</span></div>"
    )
    return totals + '<div class="board-cards">' + "".join(card_html(card) for card in found.shots) + "</div>"


def view(ctx: Context, project_id: int | None) -> tuple[str, bool]:
    """The board's HTML, and whether anything of the project is queued or rendering (the timer runs then)."""
    if not project_id:
        return board_html(None), False
    found = board(ctx.studio, project_id)
    busy = bool(found.totals.get("rendering") or found.totals.get("queued"))
    return board_html(found), busy


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    with gr.Row(equal_height=True):
        w["count"] = gr.Number(2, label="Takes per shot", minimum=1, maximum=8, precision=0, elem_id="board-count")
        w["backend"] = gr.Dropdown(backend_names(), value="animatic", label="Backend", elem_id="board-backend")
        w["needed"] = gr.Button("Render missing or stale", variant="primary", elem_id="board-render-needed")
        w["all"] = gr.Button("Render all", elem_id="board-render-all")
    w["board"] = gr.HTML(
        board_html(None),
        css_template=CSS,
        js_on_load=JS,
        elem_id="board",
        apply_default_css=True,
    )
    w["seen"] = gr.State("")  # a digest of the board last shown: a tick that changes nothing sends nothing
    w["timer"] = gr.Timer(TICK_SECONDS, active=False)
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def refresh(project_id: int | None) -> tuple[Any, ...]:
        shown, busy = view(ctx, project_id)
        return shown, digest(shown), gr.Timer(active=busy)

    outputs = [w["board"], w["seen"], w["timer"]]
    for trigger in (ctx.project.change, ctx.changed.change):
        trigger(refresh, inputs=ctx.project, outputs=outputs, api_name=False, show_progress="hidden")
    ctx.page.load(refresh, inputs=ctx.project, outputs=outputs, api_name=False, show_progress="hidden")

    def tick(project_id: int | None, seen: str, changed: int) -> tuple[Any, ...]:
        shown, busy = view(ctx, project_id)
        now = digest(shown)
        if now == seen:
            return gr.update(), seen, gr.Timer(active=busy), changed
        # Something landed or moved on: other panels showing the same shots refresh too, once it is done.
        return shown, now, gr.Timer(active=busy), changed if busy else bump(changed)

    w["timer"].tick(
        tick,
        inputs=[ctx.project, w["seen"], ctx.changed],
        outputs=[*outputs[:2], w["timer"], ctx.changed],
        api_name=False,
        show_progress="hidden",
    )

    def settings(backend: str | None) -> RenderSettings:
        return RenderSettings(backend=backend or "animatic")

    def render(scope: str) -> Any:
        @user_errors
        def run(project_id: int | None, count: float | None, backend: str | None, changed: int) -> tuple[Any, ...]:
            jobs = render_from_board(
                ctx.studio, need_project(project_id), scope, takes=int(count or 1), settings=settings(backend)
            )
            ctx.wake_worker()
            gr.Info(f"Queued {len(jobs)} take(s).")
            return bump(changed)  # every panel that shows the queue or the shots looks again

        return run

    inputs = [ctx.project, w["count"], w["backend"], ctx.changed]
    w["needed"].click(render("needed"), inputs=inputs, outputs=ctx.changed, api_name="board_render_needed")
    w["all"].click(render("all"), inputs=inputs, outputs=ctx.changed, api_name="board_render_all")

    @user_errors
    def act(
        project_id: int | None, count: float | None, backend: str | None, changed: int, event: gr.EventData
    ) -> tuple[Any, ...]:
        data = event._data if isinstance(event._data, dict) else {}
        action, number = data.get("action"), data.get("shot")
        project_id = need_project(project_id)
        if not isinstance(number, int) or isinstance(number, bool):
            raise gr.Error("That card has no shot number.", print_exception=False)
        keep = (gr.update(),) * 3
        if action == "render":
            jobs = render_from_board(
                ctx.studio, project_id, "shot", shot=number, takes=int(count or 1), settings=settings(backend)
            )
            ctx.wake_worker()
            gr.Info(f"Queued {len(jobs)} take(s) of shot {number}.")
            return *keep, gr.update(), gr.update(), gr.update(), bump(changed)
        if action == "move":
            to = data.get("to")
            if not isinstance(to, int) or isinstance(to, bool):
                raise gr.Error("Drop the card on another card.", print_exception=False)
            shot = storyboard.shot_number(ctx.studio, project_id, number)
            storyboard.move_shot(ctx.studio, shot.id, to)
            gr.Info(f"Moved shot {number} to {to}.")
            return *keep, gr.update(), gr.update(), gr.update(), bump(changed)
        shot = storyboard.shot_number(ctx.studio, project_id, number)
        if action == "open":  # the shot's form, filled with its own values (a new request each time)
            asked = {"shot": shot.id, "nonce": time.monotonic_ns()}
            return *keep, gr.update(), asked, gr.Tabs(selected="storyboard"), changed
        return *keep, shot.id, gr.update(), gr.Tabs(selected="takes"), changed

    w["board"].click(
        act,
        inputs=[ctx.project, w["count"], w["backend"], ctx.changed],
        outputs=[*outputs, ctx.shot, ctx.goto, ctx.tabs, ctx.changed],
        api_name=False,
        show_progress="hidden",
    )
