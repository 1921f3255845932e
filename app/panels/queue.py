"""Queue: the project's jobs with live progress; cancel, retry, and move a job to the front."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels.common import Context, bump, need_project, user_errors
from projects import render_queue, scoring

COLUMNS = ["job", "state", "shot", "take", "backend", "seed", "progress", "scores", "error"]
SCORES = COLUMNS.index("scores")
REFRESH_SECONDS = 2.0


def rows(ctx: Context, project_id: int | None) -> list[list[Any]]:
    if not project_id:
        return []
    jobs = render_queue.list_jobs(ctx.studio, project_id)
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


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["table"] = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="queue-table")
    with gr.Row():
        w["takes"] = gr.Number(label="Takes per shot", value=1, precision=0, minimum=1, maximum=100)
        w["all"] = gr.Button("Render every shot (animatic)", variant="primary", elem_id="render-all")
    with gr.Row():
        w["job"] = gr.Number(label="Job", precision=0, elem_id="queue-job")
        w["cancel"] = gr.Button("Cancel", variant="stop", elem_id="cancel-job")
        w["retry"] = gr.Button("Retry", elem_id="retry-job")
        w["first"] = gr.Button("Run next")
    w["timer"] = gr.Timer(REFRESH_SECONDS)
    w["seen"] = gr.State(None)  # the last table shown, so a tick that changes nothing updates nothing
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    def tick(project_id: int | None, seen: Any, changed: int) -> tuple[Any, ...]:
        current = rows(ctx, project_id)
        if current == seen:
            return gr.update(), seen, changed
        # Something finished, moved or was scored: tell the other panels (a finished take appears without
        # reloading, and its scores a moment later, when the worker has scored it).
        states = {row[0]: (row[1], row[SCORES]) for row in current}
        before = {row[0]: (row[1], row[SCORES]) for row in seen or []}
        finished = any(states.get(job) != state for job, state in before.items())
        return current, current, bump(changed) if finished else changed

    w["timer"].tick(tick, inputs=[ctx.project, w["seen"], ctx.changed], outputs=[w["table"], w["seen"], ctx.changed])
    ctx.project.change(lambda pid: rows(ctx, pid), inputs=ctx.project, outputs=w["table"], api_name=False)

    def action(kind: str) -> Any:
        @user_errors
        def run(job_id: float | None, project_id: int | None) -> list[list[Any]]:
            if not job_id:
                raise gr.Error("Type the job's number first.", print_exception=False)
            job = int(job_id)
            if kind == "cancel":
                render_queue.cancel_job(ctx.studio, job)
            elif kind == "retry":
                render_queue.retry_job(ctx.studio, job)
                ctx.wake_worker()
            else:
                queued = [j for j in render_queue.list_jobs(ctx.studio, project_id, states=["queued"]) if j.id != job]
                if queued:
                    render_queue.move_job(ctx.studio, job, before=queued[0].id, priority=queued[0].priority)
            return rows(ctx, project_id)

        return run

    @user_errors
    def render_all(project_id: int | None, count: float | None) -> list[list[Any]]:
        jobs = render_queue.queue_renders(ctx.studio, need_project(project_id), takes=int(count or 1))
        ctx.wake_worker()
        gr.Info(f"Queued {len(jobs)} take(s).")
        return rows(ctx, project_id)

    w["all"].click(render_all, inputs=[ctx.project, w["takes"]], outputs=w["table"], api_name="render_all")

    for kind in ("cancel", "retry", "first"):
        w[kind].click(
            action(kind),
            inputs=[w["job"], ctx.project],
            outputs=w["table"],
            api_name=f"{kind}_job" if kind != "first" else False,
        )
