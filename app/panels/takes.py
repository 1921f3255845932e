"""Takes: the selected shot's takes with video, seed, backend, scores (with each character's identity in words) and
status; compare two to four side by side, playing together, and approve any of them; render more, render one
again exactly, or retake this shot (or every shot) until its cast is kept."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels import compare
from app.panels.common import Context, bump, user_errors
from projects import render_queue, retakes, scoring, storyboard, takes
from projects.backends import available_backends
from projects.render_now import wait_for_jobs

COLUMNS = [
    "take",
    "id",
    "status",
    "seed",
    "backend",
    "identity",
    "cast",
    "look",
    "continuity",
    "stability",
    "overall",
    "approved",
]


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["heading"] = gr.Markdown("Select a shot on the Storyboard tab.", elem_id="takes-heading")
    w["compare_pick"] = gr.CheckboxGroup(label="Compare (two to four takes)", choices=[], elem_id="compare-pick")
    w["compare"] = gr.HTML(
        compare.compare_html([], {}), css_template=compare.CSS, js_on_load=compare.JS, elem_id="compare"
    )
    w["seen_takes"] = gr.State([])  # the finished takes shown so far: one that lands later joins the comparison
    w["table"] = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="takes-table")
    with gr.Accordion("One take on the left, one on the right", open=False, elem_id="takes-left-right"):
        with gr.Row():
            w["left_pick"] = gr.Dropdown(label="Left", choices=[], allow_custom_value=True, elem_id="take-left")
            w["right_pick"] = gr.Dropdown(label="Right", choices=[], allow_custom_value=True, elem_id="take-right")
        with gr.Row():
            w["left"] = gr.Video(label="Left take", interactive=False, elem_id="video-left")
            w["right"] = gr.Video(label="Right take", interactive=False, elem_id="video-right")
        with gr.Row():
            w["approve"] = gr.Button("Approve the left take", variant="primary", elem_id="approve-take")
            w["again"] = gr.Button("Render the left take again")
    with gr.Row():
        w["count"] = gr.Number(label="Takes", value=2, precision=0, minimum=1, maximum=100, elem_id="takes-count")
        w["backend"] = gr.Dropdown(label="Backend", choices=["animatic"], value="animatic", elem_id="render-backend")
        w["render"] = gr.Button("Render more takes", elem_id="render-takes")
    w["suggestion"] = gr.Markdown("", elem_id="suggested-take")
    with gr.Row():
        w["bar"] = gr.Slider(
            label="Retake until identity is at least",
            minimum=0.0,
            maximum=1.0,
            step=0.05,
            value=0.7,
            info="0.5 is the face model's own same-person threshold; every character in the shot must reach it",
            elem_id="retake-bar",
        )
        w["budget"] = gr.Number(label="New takes a shot, at most", value=4, precision=0, minimum=1, maximum=50)
        w["review"] = gr.Checkbox(label="Leave the clearing take for review (do not approve it)", value=False)
    with gr.Row():
        w["approve_best"] = gr.Button("Approve the best take of every shot", elem_id="approve-best")
        w["retake_shot"] = gr.Button("Retake this shot until consistent", elem_id="retake-shot")
        w["retake_all"] = gr.Button("Retake every shot until consistent", elem_id="retake-all")
    w["retake_report"] = gr.Markdown("", elem_id="retake-report")
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    def refresh(
        project_id: int | None, shot_id: int | None, picked: list[int] | None = None, seen: list[int] | None = None
    ) -> tuple[Any, ...]:
        if not project_id or not shot_id:
            empty = gr.update(choices=[], value=None)
            return (
                "Select a shot on the Storyboard tab.",
                [],
                empty,
                empty,
                None,
                None,
                "",
                gr.update(choices=[], value=[]),
                compare.compare_html([], {}),
                [],
            )
        shot = storyboard.get_shot(ctx.studio, shot_id)
        page = takes.list_takes(ctx.studio, project_id, shot_number=shot.number, limit=500)
        done = [t for t in page.items if t.status == "done"]
        scored = {s.take_id: s for s in scoring.stored_scores(ctx.studio, [t.id for t in done])}
        rows = []
        for t in page.items:
            s = scored.get(t.id)
            identity, look, continuity, stability = _round(
                [s.scores.get(m) if s else None for m in ("identity", "look", "continuity", "stability")]
            )
            who = s.cast_line() if s else ""
            overall = _r(s.overall) if s else None
            scores = [identity, who, look, continuity, stability, overall]
            rows.append([t.take_number, t.id, t.status, t.seed, t.backend, *scores, t.approved])
        choices = [(f"take {t.take_number}", t.id) for t in done]
        left = next((t for t in done if t.approved), done[-1] if done else None)
        right = done[-2] if len(done) > 1 else None
        best = scoring.best_per_shot(list(scored.values())).get(shot.number)
        hint = f"Best scored: take {best.take_number} ({best.overall:.3f} overall)." if best else ""
        heading = f"Shot {shot.number}: {shot.title or shot.prompt[:60]}" + (" (stale)" if shot.stale else "")
        compared = compare.default_choice(done, picked, seen)
        by_id = {t.id: t for t in done}
        return (
            heading,
            rows,
            gr.update(choices=choices, value=left.id if left else None),
            gr.update(choices=choices, value=right.id if right else None),
            str(left.video_path) if left else None,
            str(right.video_path) if right else None,
            hint,
            gr.update(choices=choices, value=compared),
            compare.compare_html([by_id[i] for i in compared], scored),
            [t.id for t in done],
        )

    outputs = [w["heading"], w["table"], w["left_pick"], w["right_pick"], w["left"], w["right"]]
    outputs += [w["suggestion"], w["compare_pick"], w["compare"], w["seen_takes"]]
    ctx.shot.change(refresh, inputs=[ctx.project, ctx.shot], outputs=outputs, api_name=False)
    ctx.changed.change(
        refresh,
        inputs=[ctx.project, ctx.shot, w["compare_pick"], w["seen_takes"]],
        outputs=outputs,
        api_name=False,
        show_progress="hidden",
    )

    @user_errors
    def compared(picked: list[int] | None) -> str:
        if picked and len(picked) > compare.MAX_COMPARED:
            raise gr.Error(f"Compare at most {compare.MAX_COMPARED} takes at once.", print_exception=False)
        chosen = [takes.get_take(ctx.studio, take_id) for take_id in picked or []]
        scored = {s.take_id: s for s in scoring.stored_scores(ctx.studio, [t.id for t in chosen])}
        return compare.compare_html(chosen, scored)

    w["compare_pick"].input(compared, inputs=w["compare_pick"], outputs=w["compare"], api_name=False)

    @user_errors
    def approve_compared(changed: int, event: gr.EventData) -> int:
        data = event._data if isinstance(event._data, dict) else {}
        take_id = data.get("take")
        if data.get("action") != "approve" or not isinstance(take_id, int) or isinstance(take_id, bool):
            raise gr.Error("That button names no take.", print_exception=False)
        info = takes.approve_take(ctx.studio, take_id)
        gr.Info(f"Approved take {info.take_number} of shot {info.shot_number}.")
        return bump(changed)

    w["compare"].click(
        approve_compared, inputs=ctx.changed, outputs=ctx.changed, api_name=False, show_progress="hidden"
    )

    def backend_choices() -> Any:
        return gr.update(choices=[b.name for b in available_backends(ctx.studio) if b.available and b.kind == "video"])

    ctx.project.change(backend_choices, outputs=w["backend"], api_name=False)

    def video(take_id: int | None) -> str | None:
        return str(takes.get_take(ctx.studio, take_id).video_path) if take_id else None

    w["left_pick"].input(video, inputs=w["left_pick"], outputs=w["left"], api_name=False)
    w["right_pick"].input(video, inputs=w["right_pick"], outputs=w["right"], api_name=False)

    @user_errors
    def approve(take_id: int | None, changed: int) -> int:
        if not take_id:
            raise gr.Error("Choose a finished take on the left first.", print_exception=False)
        info = takes.approve_take(ctx.studio, take_id)
        gr.Info(f"Approved take {info.take_number} of shot {info.shot_number}.")
        return bump(changed)

    w["approve"].click(approve, inputs=[w["left_pick"], ctx.changed], outputs=ctx.changed, api_name="approve_take")

    @user_errors
    def render_more(project_id: int | None, shot_id: int | None, count: float, backend: str, changed: int) -> int:
        if not project_id or not shot_id:
            raise gr.Error("Select a shot on the Storyboard tab first.", print_exception=False)
        shot = storyboard.get_shot(ctx.studio, shot_id)
        jobs = render_queue.queue_renders(
            ctx.studio,
            project_id,
            shots=[shot.number],
            takes=int(count or 1),
            settings=render_queue.RenderSettings(backend=backend or "animatic"),
        )
        ctx.wake_worker()
        gr.Info(f"Queued {len(jobs)} take(s); they appear here when done.")
        return bump(changed)

    w["render"].click(
        render_more,
        inputs=[ctx.project, ctx.shot, w["count"], w["backend"], ctx.changed],
        outputs=ctx.changed,
        api_name="render_shot",
    )

    @user_errors
    def again(take_id: int | None, changed: int) -> int:
        if not take_id:
            raise gr.Error("Choose a finished take on the left first.", print_exception=False)
        render_queue.render_again(ctx.studio, take_id)
        ctx.wake_worker()
        gr.Info("Queued: the same backend, settings, seed and pictures.")
        return bump(changed)

    w["again"].click(again, inputs=[w["left_pick"], ctx.changed], outputs=ctx.changed, api_name=False)

    def retake(every_shot: bool) -> Any:
        @user_errors
        def run(
            project_id: int | None,
            shot_id: int | None,
            bar: float,
            budget: float,
            review: bool,
            backend: str,
            changed: int,
        ) -> tuple[str, int]:
            if not project_id or (not every_shot and not shot_id):
                raise gr.Error("Select a shot on the Storyboard tab first.", print_exception=False)
            shots = None if every_shot else [storyboard.get_shot(ctx.studio, shot_id).number]
            report = retakes.render_until(
                ctx.studio,
                project_id,
                retakes.Bar("identity", float(bar)),
                max_takes=int(budget or 1),
                shots=shots,
                settings=render_queue.RenderSettings(backend=backend or "animatic"),
                approve=not review,
                wait=lambda studio, ids: wait_for_jobs(studio, ids, wake=ctx.wake_worker),
            )
            return retake_summary(report), bump(changed)

        return run

    @user_errors
    def approve_best(project_id: int | None, changed: int) -> tuple[str, int]:
        if not project_id:
            raise gr.Error("Open a project first.", print_exception=False)
        made = scoring.approve_best(ctx.studio, project_id)
        listed = ", ".join(f"shot {t.shot_number} take {t.take_number}" for t in made)
        return (f"Approved {listed}." if made else "Every shot keeps its approval."), bump(changed)

    w["approve_best"].click(
        approve_best,
        inputs=[ctx.project, ctx.changed],
        outputs=[w["retake_report"], ctx.changed],
        api_name="approve_best",
    )

    inputs = [ctx.project, ctx.shot, w["bar"], w["budget"], w["review"], w["backend"], ctx.changed]
    outputs = [w["retake_report"], ctx.changed]
    w["retake_shot"].click(retake(False), inputs=inputs, outputs=outputs, api_name="retake_shot")
    w["retake_all"].click(retake(True), inputs=inputs, outputs=outputs, api_name="retake_all")


def retake_summary(report: retakes.RetakeReport) -> str:
    """The retake report as Markdown: one line a shot, the missed ones first."""
    lines = [f"**{report.takes_rendered} take(s) rendered until {report.bar}.**", ""]
    for shot in sorted(report.shots, key=lambda s: (s.cleared, s.shot_number)):
        cast_line = ", ".join(
            f"{name} {part['score']:.2f} ({part['verdict']})" for name, part in shot.characters.items()
        )
        state = "cleared" if shot.cleared else "**below the bar**"
        take = f"take id {shot.take_id}" if shot.take_id is not None else "no finished take"
        lines.append(
            f"- Shot {shot.shot_number}: {state} after {shot.takes_rendered} new take(s); {take}"
            + (" (approved)" if shot.approved else "")
            + (f"; {cast_line}" if cast_line else "")
            + (f"; {shot.note}" if shot.note else "")
        )
    return "\n".join(lines)


def _r(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _round(values: list[float | None]) -> list[float | None]:
    return [_r(v) for v in values]
