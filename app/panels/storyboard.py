"""Storyboard: the shots as a grid of pictures in order; select one to edit, move or delete it, or add shots."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels import keyframes as keyframes_panel
from app.panels.common import Context, bump, need_project, picture_input, user_errors
from pipelines.camera import PRESETS
from projects import cast, storyboard


def shots(ctx: Context, project_id: int | None) -> list[Any]:
    return storyboard.all_shots(ctx.studio, project_id) if project_id else []


def character_names(ctx: Context, project_id: int | None) -> list[str]:
    return [c.name for c in cast.list_characters(ctx.studio, project_id)] if project_id else []


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["grid"] = gr.Gallery(
        label="Shots",
        columns=6,
        fit_columns=False,  # a storyboard of one or two shots shows them as cards, not stretched across the page
        height="fit-content",
        object_fit="contain",
        allow_preview=False,
        elem_id="storyboard-grid",
    )
    w["list"] = gr.Dataframe(
        headers=["#", "title", "seconds", "camera", "characters", "takes", "approved"],
        interactive=False,
        elem_id="storyboard-list",
    )
    with gr.Row():
        w["selected"] = gr.Markdown("Select a shot to edit it, or add a new one below.", elem_id="selected-shot")
        w["number"] = gr.Number(label="Shot number", value=1, precision=0, minimum=1, elem_id="shot-number")
        w["open"] = gr.Button("Open shot", elem_id="open-shot")
        w["refresh"] = gr.Button("Refresh", elem_id="refresh-storyboard")
    with gr.Row():
        w["title"] = gr.Textbox(label="Title", elem_id="shot-title")
        w["scene"] = gr.Textbox(label="Scene")
        w["duration"] = gr.Number(label="Seconds", value=4.0, minimum=0.1, maximum=600, elem_id="shot-duration")
        w["camera"] = gr.Dropdown(
            label="Camera", choices=list(PRESETS), value="static", allow_custom_value=True, elem_id="shot-camera"
        )
    w["prompt"] = gr.Textbox(label="Prompt", lines=2, elem_id="shot-prompt")
    with gr.Row():
        w["characters"] = gr.CheckboxGroup(label="Characters in the shot", choices=[], elem_id="shot-characters")
        w["continue"] = gr.Checkbox(label="Continue from the previous shot's approved take", value=False)
        w["keyframe"] = picture_input(
            "keyframe",
            label="Keyframe (optional; clear it and save to remove it)",
            type="filepath",
            sources=["upload"],
            height=160,
            elem_id="shot-keyframe",
        )
        with gr.Column():
            w["last_frame"] = picture_input(
                "last frame",
                label="Last frame (optional; for backends that end on one, such as wan-i2v)",
                type="filepath",
                sources=["upload"],
                height=160,
                elem_id="shot-last-frame",
            )
            w["from_next"] = gr.Checkbox(
                label="End on the next shot's first frame (bridges the cut)", value=False, elem_id="shot-from-next"
            )
    w["start_from"] = gr.Dropdown(
        label="Or start from a character's first reference picture",
        choices=[("(none)", "")],
        value="",
        elem_id="shot-start-from",
    )
    with gr.Row():
        w["new"] = gr.Button("New shot", elem_id="new-shot")
        w["add"] = gr.Button("Add shot", variant="primary", elem_id="add-shot")
        w["save"] = gr.Button("Save changes", elem_id="save-shot")
        w["up"] = gr.Button("Move up")
        w["down"] = gr.Button("Move down")
    with gr.Row():
        w["confirm_delete"] = gr.Checkbox(
            label="Yes, delete the selected shot and its takes", value=False, elem_id="confirm-delete-shot"
        )
        w["delete"] = gr.Button("Delete shot", variant="stop", elem_id="delete-shot")
    w["keyframes"] = keyframes_panel.build(ctx)
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    keyframes_panel.wire(ctx, w["keyframes"])
    form = [
        w["title"],
        w["scene"],
        w["duration"],
        w["camera"],
        w["prompt"],
        w["characters"],
        w["continue"],
        w["from_next"],
    ]

    def refresh(project_id: int | None, shot_id: int | None) -> tuple[Any, ...]:
        listed = shots(ctx, project_id)
        rows = [
            [s.number, s.title, s.duration, s.camera, ", ".join(s.characters), s.take_count, bool(s.approved_take_id)]
            for s in listed
        ]
        pictures = [(str(s.picture) if s.picture else _blank(), _caption(s)) for s in listed]
        choices = character_names(ctx, project_id)
        current = next((s for s in listed if s.id == shot_id), None)
        label = f"Shot {current.number} selected." if current else "No shot selected: the form adds a new shot."
        starts = [("(none)", ""), *[(name, name) for name in choices]]
        return pictures, rows, gr.update(choices=choices), label, gr.update(choices=starts)

    outputs = [w["grid"], w["list"], w["characters"], w["selected"], w["start_from"]]
    for trigger in (ctx.project.change, ctx.changed.change):
        trigger(refresh, inputs=[ctx.project, ctx.shot], outputs=outputs, api_name=False)
    w["refresh"].click(refresh, inputs=[ctx.project, ctx.shot], outputs=outputs, api_name="storyboard")

    def opened(shot: Any) -> tuple[Any, ...]:
        """A shot's own values in the form, its keyframe picture included (or an empty picture)."""
        values = (shot.title, shot.scene, shot.duration, shot.camera, shot.prompt, list(shot.characters))
        # The form holds the shot's own uploaded picture; a drawn keyframe is shown with its candidates below.
        picture = str(shot.keyframe.path) if shot.keyframe.source == "image" and shot.keyframe.path else None
        ending = str(shot.last_frame.path) if shot.last_frame.source == "image" and shot.last_frame.path else None
        flags = (shot.continue_from_previous, shot.last_frame_from_next)
        start = shot.keyframe.character if shot.keyframe.source == "character" else ""
        return shot.id, *values, *flags, picture, ending, f"Shot {shot.number} selected.", start or "", False

    shown = [ctx.shot, *form, w["keyframe"], w["last_frame"], w["selected"], w["start_from"], w["confirm_delete"]]
    unchanged = [gr.update()] * (len(shown) - 1)

    @user_errors
    def choose(project_id: int | None, event: gr.SelectData) -> tuple[Any, ...]:
        # The grid shows the shots in storyboard order: the picture clicked is the shot of that number.
        if not project_id or not isinstance(event.index, int):
            return None, *unchanged
        return opened(storyboard.shot_number(ctx.studio, project_id, event.index + 1))

    w["grid"].select(choose, inputs=ctx.project, outputs=shown, api_name=False)

    @user_errors
    def open_number(project_id: int | None, number: float | None) -> tuple[Any, ...]:
        return opened(storyboard.shot_number(ctx.studio, need_project(project_id), int(number or 0)))

    w["open"].click(open_number, inputs=[ctx.project, w["number"]], outputs=shown, api_name="open_shot")

    @user_errors
    def open_asked(request: Any) -> tuple[Any, ...]:
        """A shot opened from elsewhere on the page (a card of the board)."""
        if not isinstance(request, dict) or not isinstance(request.get("shot"), int):
            return gr.update(), *unchanged
        return opened(storyboard.get_shot(ctx.studio, request["shot"]))

    if ctx.goto is not None:
        ctx.goto.change(open_asked, inputs=ctx.goto, outputs=shown, api_name=False)

    def fields(
        title: str,
        scene: str,
        duration: float,
        camera: str,
        prompt: str,
        chars: list[str],
        cont: bool,
        from_next: bool,
    ) -> dict:
        return {
            "title": title,
            "scene": scene,
            "duration": duration,
            "camera": camera,
            "prompt": prompt,
            "characters": list(chars or []),
            "continue_from_previous": bool(cont),
            "last_frame_from_next": bool(from_next),
        }

    @user_errors
    def add(
        project_id: int | None, changed: int, keyframe: str | None, ending: str | None, start: str, *values: Any
    ) -> tuple[Any, ...]:
        given = fields(*values)
        if start and not keyframe:
            given["keyframe_character"] = start
        shot = storyboard.add_shot(
            ctx.studio, need_project(project_id), keyframe=keyframe, last_frame=_own_ending(ending, given), **given
        )
        gr.Info(f"Added shot {shot.number}.")
        # The new shot is selected, and the form shows it: its own picture, not one for the next shot to inherit.
        return *opened(shot), bump(changed)

    w["add"].click(
        add,
        inputs=[ctx.project, ctx.changed, w["keyframe"], w["last_frame"], w["start_from"], *form],
        outputs=[*shown, ctx.changed],
        api_name="add_shot",
    )

    @user_errors
    def save(
        shot_id: int | None, changed: int, keyframe: str | None, ending: str | None, start: str, *values: Any
    ) -> tuple[Any, ...]:
        if not shot_id:
            raise gr.Error("Select a shot first (on the Board, or in the grid).", print_exception=False)
        shot = storyboard.get_shot(ctx.studio, shot_id)
        edits = changed_fields(shot, fields(*values), keyframe, ending, start)
        if not edits:
            gr.Info(f"Nothing to save: shot {shot.number} is as it was.")
            return changed, False
        storyboard.update_shot(ctx.studio, shot_id, **edits)
        gr.Info(f"Saved shot {shot.number}: {', '.join(dict.fromkeys(_said(name) for name in edits))}.")
        return bump(changed), False

    w["save"].click(
        save,
        inputs=[ctx.shot, ctx.changed, w["keyframe"], w["last_frame"], w["start_from"], *form],
        outputs=[ctx.changed, w["confirm_delete"]],
        api_name="save_shot",
    )

    def new() -> tuple[Any, ...]:
        """An empty form for a new shot (nothing selected: Add shot adds it)."""
        blank = ("", "", 4.0, "static", "", [], False, False)
        return None, *blank, None, None, "New shot: fill in the form, then Add shot.", "", False

    w["new"].click(new, outputs=shown, api_name=False)

    def mover(step: int) -> Any:
        @user_errors
        def move(shot_id: int | None, changed: int) -> int:
            if not shot_id:
                raise gr.Error("Select a shot in the grid first.", print_exception=False)
            shot = storyboard.get_shot(ctx.studio, shot_id)
            target = shot.number + step
            listed = storyboard.list_shots(ctx.studio, shot.project_id, limit=1)
            if 1 <= target <= listed.total:
                storyboard.move_shot(ctx.studio, shot_id, target)
            return bump(changed)

        return move

    w["up"].click(mover(-1), inputs=[ctx.shot, ctx.changed], outputs=ctx.changed, api_name=False)
    w["down"].click(mover(+1), inputs=[ctx.shot, ctx.changed], outputs=ctx.changed, api_name=False)

    @user_errors
    def delete(shot_id: int | None, confirmed: bool, changed: int) -> tuple[Any, ...]:
        if not shot_id:
            raise gr.Error("Select a shot first (on the Board, or in the grid).", print_exception=False)
        if not confirmed:
            number = storyboard.get_shot(ctx.studio, shot_id).number
            raise gr.Error(
                f"Tick 'Yes, delete the selected shot and its takes' to delete shot {number}.", print_exception=False
            )
        info = storyboard.delete_shot(ctx.studio, shot_id)
        gr.Info(f"Deleted shot {info.number}.")
        return None, bump(changed), False

    w["delete"].click(
        delete,
        inputs=[ctx.shot, w["confirm_delete"], ctx.changed],
        outputs=[ctx.shot, ctx.changed, w["confirm_delete"]],
        api_name=False,
    )


def changed_fields(
    shot: Any, given: dict[str, Any], keyframe: str | None, ending: str | None, start: str | None
) -> dict[str, Any]:
    """What the form changes of ``shot``: its fields that differ, and its pictures only where they were replaced or
    cleared (a picture the form was opened with, saved back, is the same picture)."""
    current = {
        "title": shot.title,
        "scene": shot.scene,
        "duration": shot.duration,
        "camera": shot.camera,
        "prompt": shot.prompt,
        "characters": list(shot.characters),
        "continue_from_previous": shot.continue_from_previous,
        "last_frame_from_next": shot.last_frame_from_next,
    }
    edits = {key: value for key, value in given.items() if key in current and value != current[key]}
    if "duration" in edits and isinstance(edits["duration"], int | float) and edits["duration"] == shot.duration:
        del edits["duration"]
    own = str(shot.keyframe.path) if shot.keyframe.source == "image" and shot.keyframe.path else None
    character = shot.keyframe.character if shot.keyframe.source == "character" else None
    if keyframe and keyframe != own:
        edits["keyframe"] = keyframe
    elif not keyframe and start and start != character:
        edits["keyframe_character"] = start
    elif not keyframe and not start and (own or character):
        edits["keyframe"] = None  # the picture was cleared
        edits["keyframe_character"] = None
    mine = str(shot.last_frame.path) if shot.last_frame.source == "image" and shot.last_frame.path else None
    ending = _own_ending(ending, given)
    if ending and ending != mine:
        edits["last_frame"] = ending
    elif not ending and mine and not given["last_frame_from_next"]:
        edits["last_frame"] = None
    return edits


def _said(field: str) -> str:
    return {
        "continue_from_previous": "continues from the previous shot",
        "last_frame_from_next": "ends on the next shot",
        "keyframe_character": "keyframe",
        "last_frame": "last frame",
    }.get(field, field)


def _own_ending(ending: str | None, given: dict[str, Any]) -> str | None:
    """The shot's own last frame, unless it ends on the next shot's first frame (then the picture is not kept)."""
    return None if given["last_frame_from_next"] else ending or None


def _caption(shot: Any) -> str:
    mark = " ✓" if shot.approved_take_id else (" (stale)" if shot.stale else "")
    text = f"{shot.number}. {shot.title or shot.prompt[:40]} · {shot.duration:g}s · {shot.camera}{mark}"
    return text + (" · " + ", ".join(shot.characters) if shot.characters else "")


def _blank() -> Any:
    """A grey card for shots with nothing to show yet."""
    import numpy as np

    return np.full((96, 160, 3), 64, dtype=np.uint8)
