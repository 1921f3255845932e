"""Queue: the project's jobs as cards, with a picture, live progress and time left, and the night's totals;
cancel, retry, run next and reorder by clicking. The table below the cards is the same queue for copying.

The timer runs only while something is queued or running; a change anywhere on the page (a render queued from
the board, a take approved) looks again and starts it when there is work.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels.board import file_url, html_escape, seconds_in_words
from app.panels.common import Context, bump, need_project, user_errors
from projects import render_queue, scoring
from projects.job_records import JobInfo
from projects.queue_cards import JobCard, QueueCards, queue_cards

COLUMNS = ["job", "state", "shot", "take", "backend", "seed", "progress", "scores", "error"]
SCORES = COLUMNS.index("scores")
REFRESH_SECONDS = 2.0

CSS = """
.queue-totals { display: flex; gap: 1.2em; flex-wrap: wrap; margin: 0 0 .6em; }
.queue-totals b { font-variant-numeric: tabular-nums; }
.queue-cards { display: flex; flex-direction: column; gap: 6px; max-height: 70vh; overflow-y: auto; }
.job { display: grid; grid-template-columns: 96px 1fr auto; gap: 10px; align-items: center; padding: 6px;
  border: 1px solid var(--border-color-primary); border-radius: 8px; background: var(--block-background-fill);
  content-visibility: auto; contain-intrinsic-size: 600px 66px; }
.job .pic { width: 96px; height: 54px; border-radius: 5px; overflow: hidden; background: #2a2a2e; }
.job .pic img { width: 100%; height: 100%; object-fit: cover; display: block; }
.job .what { font-weight: 600; }
.job .meta { font-size: .85em; opacity: .8; }
.job .bar { height: 4px; background: var(--border-color-primary); border-radius: 2px; overflow: hidden;
  margin-top: 4px; }
.job .bar i { display: block; height: 100%; background: #3b82f6; }
.job .state { font-size: .78em; border-radius: 999px; padding: 1px 8px; margin-right: 6px; }
.job .state.running { background: #1d4f91; color: #fff; }
.job .state.done { background: #1f6f3f; color: #fff; }
.job .state.failed { background: #9b1c1c; color: #fff; }
.job .state.queued, .job .state.cancelled { border: 1px solid var(--border-color-primary); }
.job .err { color: #c0392b; font-size: .85em; }
.job .actions { display: flex; gap: 4px; }
.job .actions button { border-radius: 6px; padding: 2px 8px; font-size: .85em; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill); }
.queue-empty { padding: 1.5em; text-align: center; opacity: .7; }
"""

JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('[data-action]');
  const job = event.target.closest('.job');
  if (!button || !job) return;
  trigger('click', {action: button.dataset.action, job: Number(job.dataset.job)});
});
"""


def rows(ctx: Context, project_id: int | None, jobs: list[JobInfo] | None = None) -> list[list[Any]]:
    """The queue as table rows (``jobs`` where the caller has read them already)."""
    if not project_id:
        return []
    jobs = render_queue.list_jobs(ctx.studio, project_id) if jobs is None else jobs
    scored = scoring.scored_takes(ctx.studio, [job.take_id for job in jobs if job.state == "done" and job.take_id])
    out = []
    for job in jobs:
        progress = f"{job.stage} {job.step}/{job.total}" if job.state == "running" else ""
        # A drawn picture is scored before it is recorded; a take's scores land after it is done.
        done_scored = job.take_id in scored or job.kind != "take"
        scores = ("scored" if done_scored else "scoring") if job.state == "done" else ""
        which = job.take_number if job.kind == "take" else job.what
        row = [job.id, job.state, job.shot_number or "", which, job.backend, job.seed, progress, scores]
        out.append([*row, job.error])
    return out


def job_html(card: JobCard) -> str:
    job = card.job
    picture = f'<img loading="lazy" src="{html_escape(file_url(card.picture))}" alt="">' if card.picture else ""
    what = job.what or (f"shot {job.shot_number} take {job.take_number}" if job.kind == "take" else job.kind)
    meta = f"{html_escape(job.backend)} · seed {job.seed}"
    progress = ""
    if job.state == "running":
        left = seconds_in_words(card.seconds_left)
        meta += f" · {html_escape(job.stage)} {job.step}/{job.total}" + (f" · {left}" if left else "")
        share = 100 * job.step / job.total if job.total else 0
        progress = f'<div class="bar"><i style="width:{share:.0f}%"></i></div>'
    error = f'<div class="err">{html_escape(job.error)}</div>' if job.error and job.state == "failed" else ""
    buttons = []
    if job.state in ("queued", "running"):
        buttons.append('<button data-action="cancel">Cancel</button>')
    if job.state == "queued":
        buttons += [
            '<button data-action="next" title="run it next">Run next</button>',
            '<button data-action="up" title="earlier in the queue">↑</button>',
            '<button data-action="down" title="later in the queue">↓</button>',
        ]
    if job.state in ("failed", "cancelled"):
        buttons.append('<button data-action="retry">Retry</button>')
    return (
        f'<div class="job" data-job="{job.id}" id="queue-job-{job.id}"><div class="pic">{picture}</div>'
        f'<div><div class="what"><span class="state {html_escape(job.state)}">{html_escape(job.state)}</span>'
        f"{html_escape(what)} <small>(job {job.id})</small></div>"
        f'<div class="meta">{meta}</div>{progress}{error}</div>'
        f'<div class="actions">{"".join(buttons)}</div></div>'
    )


def cards_html(found: QueueCards | None) -> str:
    if found is None:
        return '<div class="queue-empty">Open a project to see its queue.</div>'
    if not found.jobs:
        return '<div class="queue-empty">Nothing queued: render shots from the Board.</div>'
    t = found.totals
    spent = seconds_in_words(t["seconds_spent"], left=False) or "0 s"
    to_go = seconds_in_words(t["seconds_to_go"], left=False)
    totals = (
        f'<div class="queue-totals" id="queue-totals"><span><b>{t["running"]}</b> running</span>'
        f"<span><b>{t['queued']}</b> queued</span><span><b>{t['done']}</b> done</span>"
        f"<span><b>{t['failed']}</b> failed</span><span><b>{t['cancelled']}</b> cancelled</span>"
        f"<span>{spent} spent</span>"
        + (f"<span>about {to_go} to go</span>" if to_go and (t["running"] or t["queued"]) else "")
        + "</div>"
    )
    return totals + '<div class="queue-cards">' + "".join(job_html(card) for card in found.jobs) + "</div>"


def view(ctx: Context, project_id: int | None) -> tuple[str, list[list[Any]], bool]:
    """The cards, the table, and whether anything is queued or running (the timer runs then)."""
    if not project_id:
        return cards_html(None), [], False
    found = queue_cards(ctx.studio, project_id)
    busy = bool(found.totals["running"] or found.totals["queued"])
    return cards_html(found), rows(ctx, project_id, [card.job for card in found.jobs]), busy


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["cards"] = gr.HTML(cards_html(None), css_template=CSS, js_on_load=JS, elem_id="queue-cards")
    with gr.Row():
        w["takes"] = gr.Number(label="Takes per shot", value=1, precision=0, minimum=1, maximum=100)
        w["all"] = gr.Button("Render every shot (animatic)", variant="primary", elem_id="render-all")
    with gr.Accordion("The queue as a table", open=False):
        w["table"] = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="queue-table")
        with gr.Row():
            w["job"] = gr.Number(label="Job", precision=0, elem_id="queue-job")
            w["cancel"] = gr.Button("Cancel", variant="stop", elem_id="cancel-job")
            w["retry"] = gr.Button("Retry", elem_id="retry-job")
            w["first"] = gr.Button("Run next")
    w["timer"] = gr.Timer(REFRESH_SECONDS, active=False)
    w["seen"] = gr.State(None)  # the last table shown, so a tick that changes nothing updates nothing
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    def tick(project_id: int | None, seen: Any, changed: int) -> tuple[Any, ...]:
        cards, current, busy = view(ctx, project_id)
        if current == seen:
            return gr.update(), gr.update(), seen, gr.Timer(active=busy), changed
        # Something finished, moved or was scored: tell the other panels (a finished take appears without
        # reloading, and its scores a moment later, when the worker has scored it).
        states = {row[0]: (row[1], row[SCORES]) for row in current}
        before = {row[0]: (row[1], row[SCORES]) for row in seen or []}
        finished = any(states.get(job) != state for job, state in before.items())
        return cards, current, current, gr.Timer(active=busy), bump(changed) if finished else changed

    w["timer"].tick(
        tick,
        inputs=[ctx.project, w["seen"], ctx.changed],
        outputs=[w["cards"], w["table"], w["seen"], w["timer"], ctx.changed],
        show_progress="hidden",
    )

    def look(project_id: int | None) -> tuple[Any, ...]:
        cards, current, busy = view(ctx, project_id)
        return cards, current, current, gr.Timer(active=busy)

    shown = [w["cards"], w["table"], w["seen"], w["timer"]]
    for trigger in (ctx.project.change, ctx.changed.change):
        trigger(look, inputs=ctx.project, outputs=shown, api_name=False, show_progress="hidden")

    def act(kind: str, job: int, project_id: int | None) -> None:
        if kind == "cancel":
            render_queue.cancel_job(ctx.studio, job)
        elif kind == "retry":
            render_queue.retry_job(ctx.studio, job)
            ctx.wake_worker()
        else:
            render_queue.nudge_job(ctx.studio, job, need_project(project_id), "first" if kind == "next" else kind)

    def action(kind: str) -> Any:
        @user_errors
        def run(job_id: float | None, project_id: int | None) -> list[list[Any]]:
            if not job_id:
                raise gr.Error("Type the job's number first.", print_exception=False)
            act("next" if kind == "first" else kind, int(job_id), project_id)
            return rows(ctx, project_id)

        return run

    @user_errors
    def clicked(project_id: int | None, changed: int, event: gr.EventData) -> tuple[Any, ...]:
        data = event._data if isinstance(event._data, dict) else {}
        job, kind = data.get("job"), data.get("action")
        if not isinstance(job, int) or isinstance(job, bool) or kind not in ("cancel", "retry", "next", "up", "down"):
            raise gr.Error("That button names no job.", print_exception=False)
        act(kind, job, need_project(project_id))
        return *look(project_id), bump(changed)

    w["cards"].click(
        clicked,
        inputs=[ctx.project, ctx.changed],
        outputs=[*shown, ctx.changed],
        api_name=False,
        show_progress="hidden",
    )

    @user_errors
    def render_all(project_id: int | None, count: float | None) -> list[list[Any]]:
        jobs = render_queue.queue_renders(ctx.studio, need_project(project_id), takes=int(count or 1))
        ctx.wake_worker()
        gr.Info(f"Queued {len(jobs)} take(s).")
        return rows(ctx, project_id)

    w["all"].click(render_all, inputs=[ctx.project, w["takes"]], outputs=w["table"], api_name="render_all").then(
        look, inputs=ctx.project, outputs=shown, api_name=False, show_progress="hidden"
    )

    for kind in ("cancel", "retry", "first"):
        w[kind].click(
            action(kind),
            inputs=[w["job"], ctx.project],
            outputs=w["table"],
            api_name=f"{kind}_job" if kind != "first" else False,
        ).then(look, inputs=ctx.project, outputs=shown, api_name=False, show_progress="hidden")
