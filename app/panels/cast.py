"""Cast: the project's characters, each with a gallery of reference images and a description."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels.common import IMAGE_TYPES, Context, bump, need_project, user_errors
from projects import cast


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["pick"] = gr.Dropdown(label="Character", choices=[], elem_id="pick-character")
    w["gallery"] = gr.Gallery(label="Reference images", columns=6, height="auto", elem_id="character-references")
    with gr.Row():
        w["name"] = gr.Textbox(label="Name", elem_id="character-name")
        w["description"] = gr.Textbox(label="Description (used in prompts)", elem_id="character-description")
    w["images"] = gr.File(
        label="Reference images (PNG, JPEG, WebP)", file_count="multiple", file_types=IMAGE_TYPES, elem_id="refs"
    )
    with gr.Row():
        w["reference"] = gr.Dropdown(label="Reference image", choices=[], elem_id="pick-reference")
        w["remove_image"] = gr.Button("Remove this image", elem_id="remove-reference")
    with gr.Row():
        w["add"] = gr.Button("Add character", variant="primary", elem_id="add-character")
        w["save"] = gr.Button("Save name and description")
        w["add_images"] = gr.Button("Add these images to the character")
        w["remove"] = gr.Button("Remove character", variant="stop")
    w["force"] = gr.Checkbox(label="Remove even if shots use this character", value=False)
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    def refresh(project_id: int | None, chosen: int | None) -> tuple[Any, ...]:
        characters = cast.list_characters(ctx.studio, project_id) if project_id else []
        ids = {c.id for c in characters}
        chosen = chosen if chosen in ids else (characters[0].id if characters else None)
        picked = next((c for c in characters if c.id == chosen), None)
        images = [(str(r.path), r.original_name) for r in picked.references] if picked else []
        choices = [(c.name, c.id) for c in characters]
        name, description = (picked.name, picked.description) if picked else ("", "")
        references = [(r.original_name, r.id) for r in picked.references] if picked else []
        return (
            gr.update(choices=choices, value=chosen),
            images,
            name,
            description,
            gr.update(choices=references, value=None),
        )

    outputs = [w["pick"], w["gallery"], w["name"], w["description"], w["reference"]]

    def look_again(project_id: int | None, chosen: int | None) -> tuple[Any, ...]:
        """A change elsewhere (another panel, a take landing): the list and pictures follow it. The name and
        description fields are filled only to show a character; with none to show they keep what is typed there
        (a reply computed before the typing must not land over it)."""
        shown = refresh(project_id, chosen)
        if shown[0].get("value") is None:
            return shown[0], shown[1], gr.update(), gr.update(), shown[4]
        return shown

    for trigger in (ctx.project.change, ctx.changed.change):
        trigger(
            look_again,
            inputs=[ctx.project, w["pick"]],
            outputs=outputs,
            api_name=False,
            show_progress="hidden",
        )
    w["pick"].input(refresh, inputs=[ctx.project, w["pick"]], outputs=outputs, api_name=False)

    @user_errors
    def add(project_id: int | None, name: str, description: str, files: list[str] | None, changed: int) -> Any:
        info = cast.add_character(
            ctx.studio, need_project(project_id), name, description=description, references=list(files or [])
        )
        gr.Info(f"Added {info.name} with {len(info.references)} reference image(s).")
        # The new character is the one shown now, so the next "add these images" goes to it.
        return bump(changed), None, *refresh(project_id, info.id)

    w["add"].click(
        add,
        inputs=[ctx.project, w["name"], w["description"], w["images"], ctx.changed],
        outputs=[ctx.changed, w["images"], *outputs],
        api_name="add_character",
    )

    @user_errors
    def save(character_id: int | None, name: str, description: str, changed: int) -> int:
        if not character_id:
            raise gr.Error("Choose a character first.", print_exception=False)
        cast.update_character(ctx.studio, character_id, name=name, description=description)
        return bump(changed)

    w["save"].click(save, inputs=[w["pick"], w["name"], w["description"], ctx.changed], outputs=ctx.changed)

    @user_errors
    def add_images(character_id: int | None, files: list[str] | None, changed: int) -> Any:
        if not character_id or not files:
            raise gr.Error("Choose a character and some images first.", print_exception=False)
        for path in files:
            cast.add_reference(ctx.studio, character_id, path)
        return bump(changed), None

    w["add_images"].click(
        add_images, inputs=[w["pick"], w["images"], ctx.changed], outputs=[ctx.changed, w["images"]], api_name=False
    )

    @user_errors
    def remove_image(reference_id: int | None, changed: int) -> int:
        if not reference_id:
            raise gr.Error("Choose a reference image first.", print_exception=False)
        info = cast.remove_reference(ctx.studio, reference_id)
        gr.Info(f"Removed {info.original_name}.")
        return bump(changed)

    w["remove_image"].click(remove_image, inputs=[w["reference"], ctx.changed], outputs=ctx.changed, api_name=False)

    @user_errors
    def remove(character_id: int | None, force: bool, changed: int) -> int:
        if not character_id:
            raise gr.Error("Choose a character first.", print_exception=False)
        info = cast.remove_character(ctx.studio, character_id, force=bool(force))
        gr.Info(f"Removed {info.name}.")
        return bump(changed)

    w["remove"].click(remove, inputs=[w["pick"], w["force"], ctx.changed], outputs=ctx.changed, api_name=False)
