"""Projects: create, open, rename, delete (with confirmation), and import a storyboard with its images.

A storyboard comes with its pictures as one zip (which keeps its folders), as loose files, or as a folder. Gradio
delivers a folder as loose files too: each upload is kept as ``<hash>/<bare name>`` and the callback gets only that
path, so ``refs/`` is lost on the way; :func:`projects.storyboard_file.import_upload` puts each picture back where
the storyboard names it, by its file name, and only a zip keeps two pictures of one name apart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gradio as gr

from app.panels.common import Context, bump, need_project, user_errors
from projects import project
from projects.errors import StudioError
from projects.records import ImportResult
from projects.storyboard_upload import PICTURE_SUFFIXES, STORYBOARD_SUFFIXES, Upload, import_upload
from projects.studio import Studio

COLUMNS = ["name", "shots", "characters", "size", "fps"]
NAMED_PROJECT = "named"
OPEN_PROJECT = "open"
TARGETS = [("The project the storyboard names (made if new)", NAMED_PROJECT), ("The open project", OPEN_PROJECT)]


def project_rows(ctx: Context) -> list[list[Any]]:
    return [
        [p.name, p.shot_count, p.character_count, f"{p.width}x{p.height}", p.fps]
        for p in project.list_projects(ctx.studio)
    ]


def project_choices(ctx: Context) -> list[tuple[str, int]]:
    return [(p.name, p.id) for p in project.list_projects(ctx.studio)]


def import_storyboard_upload(
    studio: Studio, files: list[str] | None, folder: list[str] | None, target: str, project_id: int | None
) -> ImportResult:
    """Import what the page uploaded: the chosen files (a zip, or a storyboard with its pictures) or a folder's files.

    Gradio keeps each upload as ``<hash>/<bare name>``, so that bare name is the one the user knows it by. ``target``
    is :data:`NAMED_PROJECT` (the project the storyboard names, or its file name, made if new) or
    :data:`OPEN_PROJECT` (``project_id``, where a CSV's shots may name the project's cast).
    """
    if files and folder:
        raise gr.Error("Import the chosen files or the chosen folder, not both; clear one.", print_exception=False)
    chosen = files or folder
    if not chosen:
        raise gr.Error("Choose a storyboard with its pictures, a .zip, or a folder first.", print_exception=False)
    name = project.get_project(studio, need_project(project_id)).name if target == OPEN_PROJECT else None
    return import_upload(studio, [Upload(Path(path), Path(path).name) for path in chosen], project=name)


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    with gr.Row():
        w["open"] = gr.Dropdown(
            label="Open project",
            choices=project_choices(ctx),
            allow_custom_value=True,
            elem_id="open-project",
            scale=3,
        )
        w["current"] = gr.Markdown("No project open.", elem_id="current-project")
    with gr.Row():
        w["name"] = gr.Textbox(label="New project", placeholder="The Lighthouse", elem_id="new-project-name", scale=3)
        w["width"] = gr.Number(label="Width", value=640, precision=0, minimum=64, maximum=4096)
        w["height"] = gr.Number(label="Height", value=384, precision=0, minimum=64, maximum=4096)
        w["fps"] = gr.Number(label="fps", value=16, precision=0, minimum=1, maximum=120)
        w["create"] = gr.Button("Create project", variant="primary", elem_id="create-project")
    with gr.Accordion("Import a storyboard", open=False):
        gr.Markdown(
            "A storyboard `.json` or `.csv` with the pictures it names: best as one `.zip` holding the storyboard "
            "and its folders (`refs/`) as they are; or the storyboard and its pictures chosen together, or their "
            "folder, whose pictures are found by file name (the browser does not send folders)."
        )
        with gr.Row():
            w["files"] = gr.File(
                label="Storyboard with its pictures, or one .zip",
                file_count="multiple",
                file_types=[*STORYBOARD_SUFFIXES, *PICTURE_SUFFIXES, ".zip"],
                elem_id="storyboard-files",
            )
            # No file_types here: the browser would refuse a whole folder for one stray file; the import says which.
            w["folder"] = gr.File(label="Or its folder", file_count="directory", elem_id="storyboard-folder")
        w["target"] = gr.Radio(TARGETS, value=NAMED_PROJECT, label="Import into", elem_id="storyboard-target")
        w["import"] = gr.Button("Import", elem_id="import-storyboard")
    with gr.Accordion("Rename or delete the open project", open=False):
        with gr.Row():
            w["new_name"] = gr.Textbox(label="New name", elem_id="rename-project-name")
            w["rename"] = gr.Button("Rename")
        with gr.Row():
            w["confirm"] = gr.Checkbox(label="Yes, delete this project, its shots and every take", value=False)
            w["delete"] = gr.Button("Delete project", variant="stop", elem_id="delete-project")
    w["table"] = gr.Dataframe(headers=COLUMNS, value=project_rows(ctx), interactive=False, elem_id="projects")
    # The project open last, kept in this browser for this data directory, opens again on the next visit.
    where = hashlib.sha256(str(ctx.studio.data_dir.resolve()).encode()).hexdigest()[:12]
    w["last"] = gr.BrowserState(None, storage_key=f"continuity-last-project-{where}")
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    refreshed = [w["open"], w["table"], w["current"]]

    def view(project_id: int | None) -> tuple[Any, list[list[Any]], str]:
        label = "No project open."
        if project_id:
            info = project.get_project(ctx.studio, project_id)
            label = f"**{info.name}**: {info.shot_count} shots, {info.character_count} characters, " + (
                f"{info.width}x{info.height} at {info.fps} fps"
            )
        return gr.update(choices=project_choices(ctx), value=project_id), project_rows(ctx), label

    @user_errors
    def create(name: str, width: float, height: float, fps: float, changed: int) -> tuple[Any, ...]:
        info = project.create_project(
            ctx.studio, name, width=int(width or 0), height=int(height or 0), fps=int(fps or 0)
        )
        gr.Info(f"Created {info.name}.")
        return info.id, bump(changed), "", *view(info.id)

    w["create"].click(
        create,
        inputs=[w["name"], w["width"], w["height"], w["fps"], ctx.changed],
        outputs=[ctx.project, ctx.changed, w["name"], *refreshed],
        api_name="create_project",
    )

    @user_errors
    def select(project_id: int | str | None) -> tuple[Any, ...]:
        chosen = project.get_project(ctx.studio, project_id).id if project_id not in (None, "") else None
        return chosen, None, *view(chosen)

    w["open"].input(select, inputs=w["open"], outputs=[ctx.project, ctx.shot, *refreshed], api_name="open_project")

    # A page opened (or reloaded) after the server started lists the projects as they are now, and opens the one
    # this browser had open last (when it is still there).
    def reopen(last: Any) -> tuple[Any, ...]:
        try:
            chosen = project.get_project(ctx.studio, int(last)).id if last not in (None, "") else None
        except (StudioError, TypeError, ValueError):
            chosen = None
        return chosen, *view(chosen)

    ctx.page.load(reopen, inputs=w["last"], outputs=[ctx.project, *refreshed], api_name=False)
    ctx.project.change(lambda chosen: chosen, inputs=ctx.project, outputs=w["last"], api_name=False)

    # Every input after the files has a default, so an API client may send the files alone (as it did before).
    @user_errors
    def import_files(
        files: list[str] | None,
        folder: list[str] | None = None,
        target: str = NAMED_PROJECT,
        project_id: int | None = None,
        changed: int = 0,
    ) -> tuple[Any, ...]:
        result = import_storyboard_upload(ctx.studio, files, folder, target, project_id)
        gr.Info(f"Imported {result.shots_added} shots and {result.characters_added} characters.")
        return result.project.id, bump(changed), None, None, *view(result.project.id)

    w["import"].click(
        import_files,
        inputs=[w["files"], w["folder"], w["target"], ctx.project, ctx.changed],
        outputs=[ctx.project, ctx.changed, w["files"], w["folder"], *refreshed],
        api_name="import_storyboard",
    )

    @user_errors
    def rename(project_id: int | None, new_name: str, changed: int) -> tuple[Any, ...]:
        info = project.rename_project(ctx.studio, need_project(project_id), new_name)
        return bump(changed), "", *view(info.id)

    w["rename"].click(
        rename, inputs=[ctx.project, w["new_name"], ctx.changed], outputs=[ctx.changed, w["new_name"], *refreshed]
    )

    @user_errors
    def delete(project_id: int | None, confirmed: bool, changed: int) -> tuple[Any, ...]:
        pid = need_project(project_id)
        if not confirmed:
            raise gr.Error("Tick the box to confirm: a deleted project cannot be recovered.", print_exception=False)
        info = project.delete_project(ctx.studio, pid)
        gr.Info(f"Deleted {info.name}.")
        return None, None, bump(changed), False, *view(None)

    w["delete"].click(
        delete,
        inputs=[ctx.project, w["confirm"], ctx.changed],
        outputs=[ctx.project, ctx.shot, ctx.changed, w["confirm"], *refreshed],
    )
    ctx.changed.change(lambda pid: view(pid), inputs=ctx.project, outputs=refreshed, api_name=False)
