"""Keyframes, on the selected shot: draw candidates of its first (or last) frame from its cast, see each with its
identity score for every character in it, and approve one to make it the shot's keyframe.

The candidates are drawn by the page's worker thread while the page stays usable; this section watches for them
with a timer of its own, running only while the selected shot has candidates waiting. The Queue panel's timer
cannot be relied on for this: Gradio starts a timer only once its tab has been shown, and a filmmaker who draws
keyframes from the Storyboard tab may never open the Queue tab.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels.common import Context, bump, user_errors
from projects import keyframes, storyboard
from projects.backends import available_backends
from projects.errors import NotFound

FRAMES = {"First frame": "first", "Last frame": "last"}
WAITING = ("queued", "running")
REFRESH_SECONDS = 1.5
NOTHING_CHOSEN = "Select a candidate above, then approve it."


def backend_choices(ctx: Context) -> list[str]:
    return [b.name for b in available_backends(ctx.studio) if b.kind == "keyframe" and b.available]


def candidates(ctx: Context, shot_id: int | None) -> list[Any]:
    """The selected shot's candidates (none when no shot is selected, or the shot has just been deleted)."""
    if not shot_id:
        return []
    try:
        shot = storyboard.get_shot(ctx.studio, shot_id)
        return keyframes.list_keyframes(ctx.studio, shot.project_id, shot_number=shot.number)
    except NotFound:
        return []


COLUMNS = ["candidate", "frame", "state", "identity: score and verdict", "look", "continuity", "seed", "approved"]


def identity(picture: Any) -> str:
    """Each character's identity score and verdict, e.g. ``Mara 1.00 same person``."""
    return ", ".join(
        f"{name} {part['score']:.2f} {part['verdict']}" for name, part in picture.scores.get("characters", {}).items()
    )


def caption(picture: Any) -> str:
    """A candidate in words, short enough to read under its thumbnail: whether it is approved, which (a last frame
    says so), its verdict for each character, continuity. The table under the gallery has the rest."""
    which = f"#{picture.number}" if picture.role == "first" else f"last #{picture.number}"
    parts = [which, identity(picture) or picture.status]
    if "continuity" in picture.scores:
        parts.append(f"continuity {picture.scores['continuity']:.2f}")
    if picture.error:
        parts.append(picture.error[:80])
    return ("✓ approved · " if picture.approved else "") + " · ".join(part for part in parts if part)


def rows(pictures: list[Any]) -> list[list[Any]]:
    """Every candidate of the shot, the ones still being drawn and the failed ones included."""
    out = []
    for p in pictures:
        state = f"{p.status}: {p.error}" if p.error else p.status
        look = p.scores.get("look")
        continuity = p.scores.get("continuity")
        out.append(
            [
                p.number,
                p.role,
                state,
                identity(p),
                f"{look:.2f}" if isinstance(look, int | float) else "",
                f"{continuity:.2f}" if isinstance(continuity, int | float) else "",
                p.seed,
                "✓" if p.approved else "",
            ]
        )
    return out


def status(ctx: Context, shot_id: int | None, pictures: list[Any]) -> str:
    """One line over the candidates: which shot, how many are drawn, waiting or failed, and which is approved."""
    if not shot_id:
        return "No shot selected: select one in the grid above (or open it by number) to draw its keyframes."
    try:
        shot = storyboard.get_shot(ctx.studio, shot_id)
    except NotFound:
        return "No shot selected."
    name = f"**Shot {shot.number}**" + (f" ({shot.title})" if shot.title else "")
    if not pictures:
        return f"{name}: no candidates yet. Choose the frame and how many, then draw."
    drawn = sum(p.path is not None for p in pictures)
    waiting = sum(p.status in WAITING for p in pictures)
    failed = [p for p in pictures if p.status == "failed"]
    words = [f"{drawn} candidate(s) drawn"]
    if waiting:
        words.append(f"{waiting} being drawn (they appear here as they land)")
    if failed:
        words.append(f"{len(failed)} failed: {failed[-1].error or 'see the Queue tab'}")
    approved = [f"{p.role} frame candidate {p.number}" for p in pictures if p.approved]
    words.append("approved: " + ", ".join(approved) if approved else "none approved yet")
    return f"{name}: " + "; ".join(words) + "."


def signature(pictures: list[Any]) -> list[list[Any]]:
    """What the section shows of the candidates, to tell whether a timer tick has anything new."""
    return [[p.id, p.status, p.approved, p.sha256] for p in pictures]


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    with gr.Accordion("Keyframes from the cast", open=True, elem_id="keyframes"):
        gr.Markdown(
            "Draw candidates of the selected shot's first frame (or last frame) from its characters' references, "
            "set in its location. Each is scored for identity against the cast; the approved one becomes the "
            "shot's keyframe, and takes rendered from another keyframe are marked stale."
        )
        with gr.Row(equal_height=True):
            w["frame"] = gr.Radio(list(FRAMES), value="First frame", label="Frame", elem_id="keyframe-frame")
            w["count"] = gr.Number(
                label="Candidates", value=4, precision=0, minimum=1, maximum=16, elem_id="keyframe-count"
            )
            w["backend"] = gr.Dropdown(
                label="Keyframe backend", choices=backend_choices(ctx), value="compose", elem_id="keyframe-backend"
            )
            w["draw"] = gr.Button("Draw keyframes", variant="primary", elem_id="draw-keyframes")
        w["status"] = gr.Markdown(status(ctx, None, []), elem_id="keyframe-status")
        w["gallery"] = gr.Gallery(
            label="Candidates: each character's identity score and verdict",
            columns=4,
            fit_columns=False,  # two candidates stay thumbnails, captions in view, rather than filling the width
            height="fit-content",  # every candidate in view, without the empty band of a fixed height
            object_fit="contain",
            allow_preview=False,
            elem_id="keyframe-candidates",
        )
        with gr.Row(equal_height=True):
            w["chosen"] = gr.Markdown(NOTHING_CHOSEN, elem_id="keyframe-chosen")
            w["approve"] = gr.Button("Approve this keyframe", variant="primary", elem_id="approve-keyframe")
        w["table"] = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="keyframe-table")
        w["timer"] = gr.Timer(REFRESH_SECONDS, active=False)
        w["pick"] = gr.State(None)  # the chosen candidate's id
        w["ids"] = gr.State([])  # the ids of the pictures in the gallery, in its order
        w["seen"] = gr.State(None)  # the signature of what is shown, so a tick that changes nothing updates nothing
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    def gallery(pictures: list[Any]) -> tuple[list[tuple[str, str]], list[int]]:
        drawn = [p for p in pictures if p.path is not None]
        return [(str(p.path), caption(p)) for p in drawn], [p.id for p in drawn]

    def chosen(picture: Any) -> str:
        return f"**Selected: {picture.label}** (seed {picture.seed}). {caption(picture)}"

    def show(shot_id: int | None, picked: int | None) -> tuple[Any, ...]:
        """The shot's candidates again; the one chosen stays chosen while it is still the shot's (just approved,
        say), and the section watches for the ones still being drawn."""
        pictures = candidates(ctx, shot_id)
        items, ids = gallery(pictures)
        kept = next((p for p in pictures if p.id == picked and p.id in ids), None)
        waiting = any(p.status in WAITING for p in pictures)
        return (
            items,
            ids,
            kept.id if kept else None,
            chosen(kept) if kept else NOTHING_CHOSEN,
            status(ctx, shot_id, pictures),
            rows(pictures),
            signature(pictures),
            gr.Timer(active=waiting),
        )

    shown = [w["gallery"], w["ids"], w["pick"], w["chosen"], w["status"], w["table"], w["seen"], w["timer"]]
    for trigger in (ctx.shot.change, ctx.changed.change):
        trigger(show, inputs=[ctx.shot, w["pick"]], outputs=shown, api_name=False, show_progress="hidden")

    def tick(shot_id: int | None, seen: Any) -> tuple[Any, ...]:
        """While candidates are being drawn: show each as it lands (the choice made meanwhile is kept), and stop
        watching once none is waiting."""
        pictures = candidates(ctx, shot_id)
        now = signature(pictures)
        waiting = any(p.status in WAITING for p in pictures)
        if now == seen:
            return gr.update(), gr.update(), gr.update(), gr.update(), seen, gr.Timer(active=waiting)
        items, ids = gallery(pictures)
        return items, ids, status(ctx, shot_id, pictures), rows(pictures), now, gr.Timer(active=waiting)

    w["timer"].tick(
        tick,
        inputs=[ctx.shot, w["seen"]],
        outputs=[w["gallery"], w["ids"], w["status"], w["table"], w["seen"], w["timer"]],
        api_name=False,
        show_progress="hidden",
    )

    @user_errors
    def draw(shot_id: int | None, frame: str, count: float | None, backend: str, changed: int) -> int:
        if not shot_id:
            raise gr.Error("Select a shot in the grid first.", print_exception=False)
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
        return bump(changed)  # the section shows the shot's candidates again, and watches for them to land

    w["draw"].click(
        draw,
        inputs=[ctx.shot, w["frame"], w["count"], w["backend"], ctx.changed],
        outputs=ctx.changed,
        api_name="draw_keyframes",
    )

    def pick(shot_id: int | None, ids: list[int] | None, event: gr.SelectData) -> tuple[Any, str]:
        # The gallery's pictures are the ids it was last given, in order: the picture clicked is that candidate.
        ids = ids or []
        if not isinstance(event.index, int) or not 0 <= event.index < len(ids):
            return None, NOTHING_CHOSEN
        picture = next((p for p in candidates(ctx, shot_id) if p.id == ids[event.index]), None)
        if picture is None:
            return None, NOTHING_CHOSEN
        return picture.id, chosen(picture)

    w["gallery"].select(pick, inputs=[ctx.shot, w["ids"]], outputs=[w["pick"], w["chosen"]], api_name=False)

    @user_errors
    def approve(picture_id: int | None, changed: int) -> int:
        if not picture_id:
            raise gr.Error("Select a candidate first.", print_exception=False)
        approved = keyframes.approve_keyframe(ctx.studio, picture_id)
        frame = "keyframe" if approved.role == "first" else "last frame"
        gr.Info(f"Shot {approved.shot_number}'s {frame} is now candidate {approved.number}.")
        return bump(changed)

    w["approve"].click(approve, inputs=[w["pick"], ctx.changed], outputs=ctx.changed, api_name="approve_keyframe")
