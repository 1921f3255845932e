"""Keyframes, on the selected shot: draw candidates of its first (or last) frame from its cast, see each with its
identity score for every character in it, and approve one to make it the shot's keyframe."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels.common import Context, bump, user_errors
from projects import keyframes
from projects.backends import available_backends

FRAMES = {"First frame": "first", "Last frame": "last"}


def backend_choices(ctx: Context) -> list[str]:
    return [b.name for b in available_backends(ctx.studio) if b.kind == "keyframe" and b.available]


def candidates(ctx: Context, shot_id: int | None) -> list[Any]:
    if not shot_id:
        return []
    from projects import storyboard

    shot = storyboard.get_shot(ctx.studio, shot_id)
    return keyframes.list_keyframes(ctx.studio, shot.project_id, shot_number=shot.number)


def caption(picture: Any) -> str:
    """A candidate in words: which, its verdict for each character, continuity, and whether it is approved."""
    who = ", ".join(
        f"{name} {part['score']:.2f} {part['verdict']}" for name, part in picture.scores.get("characters", {}).items()
    )
    parts = [f"{picture.role} #{picture.number}", who or picture.status]
    if "continuity" in picture.scores:
        parts.append(f"continuity {picture.scores['continuity']:.2f}")
    if picture.error:
        parts.append(picture.error[:80])
    return ("✓ approved · " if picture.approved else "") + " · ".join(part for part in parts if part)


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    with gr.Accordion("Keyframes from the cast", open=True, elem_id="keyframes"):
        gr.Markdown(
            "Draw candidates of the selected shot's first frame (or last frame) from its characters' references, "
            "set in its location. Each is scored for identity against the cast; the approved one becomes the "
            "shot's keyframe, and takes rendered from another keyframe are marked stale."
        )
        with gr.Row():
            w["frame"] = gr.Radio(list(FRAMES), value="First frame", label="Frame", elem_id="keyframe-frame")
            w["count"] = gr.Number(
                label="Candidates", value=4, precision=0, minimum=1, maximum=16, elem_id="keyframe-count"
            )
            w["backend"] = gr.Dropdown(
                label="Keyframe backend", choices=backend_choices(ctx), value="compose", elem_id="keyframe-backend"
            )
            w["draw"] = gr.Button("Draw keyframes", variant="primary", elem_id="draw-keyframes")
        w["gallery"] = gr.Gallery(
            label="Candidates", columns=4, height=300, object_fit="contain", elem_id="keyframe-candidates"
        )
        with gr.Row():
            w["chosen"] = gr.Markdown("Select a candidate to approve it.", elem_id="keyframe-chosen")
            w["approve"] = gr.Button("Approve this keyframe", elem_id="approve-keyframe")
        w["pick"] = gr.State(None)
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    def show(shot_id: int | None) -> tuple[Any, ...]:
        drawn = [p for p in candidates(ctx, shot_id) if p.path is not None]
        return [(str(p.path), caption(p)) for p in drawn], None, "Select a candidate to approve it."

    shown = [w["gallery"], w["pick"], w["chosen"]]
    for trigger in (ctx.shot.change, ctx.changed.change):
        trigger(show, inputs=ctx.shot, outputs=shown, api_name=False)

    @user_errors
    def draw(shot_id: int | None, frame: str, count: float | None, backend: str, changed: int) -> int:
        if not shot_id:
            raise gr.Error("Select a shot in the grid first.", print_exception=False)
        from projects import storyboard

        shot = storyboard.get_shot(ctx.studio, shot_id)
        jobs = keyframes.queue_keyframes(
            ctx.studio,
            shot.project_id,
            shots=[shot.number],
            candidates=int(count or 0),
            settings=keyframes.DrawSettings(backend=backend or "compose"),
            frames=(FRAMES.get(frame, "first"),),
        )
        ctx.wake_worker()
        gr.Info(f"Queued {len(jobs)} keyframe candidate(s) for shot {shot.number}; they appear here as they land.")
        return bump(changed)

    w["draw"].click(
        draw,
        inputs=[ctx.shot, w["frame"], w["count"], w["backend"], ctx.changed],
        outputs=ctx.changed,
        api_name="draw_keyframes",
    )

    def pick(shot_id: int | None, event: gr.SelectData) -> tuple[Any, str]:
        drawn = [p for p in candidates(ctx, shot_id) if p.path is not None]
        if not isinstance(event.index, int) or not 0 <= event.index < len(drawn):
            return None, "Select a candidate to approve it."
        chosen = drawn[event.index]
        return chosen.id, f"Selected: {chosen.label} (seed {chosen.seed}). {caption(chosen)}"

    w["gallery"].select(pick, inputs=ctx.shot, outputs=[w["pick"], w["chosen"]], api_name=False)

    @user_errors
    def approve(picture_id: int | None, changed: int) -> int:
        if not picture_id:
            raise gr.Error("Select a candidate first.", print_exception=False)
        approved = keyframes.approve_keyframe(ctx.studio, picture_id)
        frame = "keyframe" if approved.role == "first" else "last frame"
        gr.Info(f"Shot {approved.shot_number}'s {frame} is now candidate {approved.number}.")
        return bump(changed)

    w["approve"].click(approve, inputs=[w["pick"], ctx.changed], outputs=ctx.changed, api_name="approve_keyframe")
