"""The studio's page in the browser.

This first page lists the projects in the data directory and creates new ones; the full studio (cast,
storyboard, takes, queue, export) builds on it panel by panel. Every callback is one call into
``projects/``; the open :class:`Studio` is passed in, never kept in a module global.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from projects import project
from projects.errors import StudioError
from projects.studio import Studio

PROJECT_COLUMNS = ["name", "shots", "characters", "size", "fps"]


def project_rows(studio: Studio) -> list[list[Any]]:
    return [
        [p.name, p.shot_count, p.character_count, f"{p.width}x{p.height}", p.fps]
        for p in project.list_projects(studio)
    ]


def build_app(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="Continuity") as demo:
        gr.Markdown("# Continuity\nLong-form AI video with characters that stay themselves from shot to shot.")
        gr.Markdown(f"Data directory: `{studio.data_dir}`")
        with gr.Row():
            name = gr.Textbox(label="New project", placeholder="The Lighthouse", elem_id="new-project-name")
            create = gr.Button("Create project", variant="primary", elem_id="create-project")
        message = gr.Markdown(elem_id="message")
        table = gr.Dataframe(
            headers=PROJECT_COLUMNS, value=project_rows(studio), interactive=False, elem_id="projects"
        )

        def create_project(new_name: str) -> tuple[str, list[list[Any]], str]:
            try:
                info = project.create_project(studio, new_name)
            except StudioError as exc:
                return f"**Could not create the project:** {exc}", project_rows(studio), new_name
            return f"Created **{info.name}**.", project_rows(studio), ""

        create.click(create_project, inputs=name, outputs=[message, table, name], api_name="create_project")
        demo.load(lambda: project_rows(studio), outputs=table, api_name=False)
    return demo
