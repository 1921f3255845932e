"""The studio's page: a list of panel builds, then a list of wires (each panel is a module in app/panels).

Per-user state (the open project, the selected shot) lives in ``gr.State``; the open :class:`Studio` and the
render worker are the process's and are passed in, never kept in module globals. Rendering never blocks the
page: buttons queue jobs, the worker thread renders them, and the Queue panel's timer shows progress and tells
the other panels when a take has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.panels import backends, board, cast, common, export, projects, queue, storyboard, takes
from projects.studio import Studio

PANELS = (
    ("Projects", projects),
    ("Cast", cast),
    ("Board", board),
    ("Storyboard", storyboard),
    ("Takes", takes),
    ("Queue", queue),
    ("Export", export),
    ("Settings", backends),
)


# A refused action is said once, in the page's notice; Gradio would also lay an "Error" badge over every field the
# action would have filled, which reads as if the fields were broken and hides what the user typed.
PAGE_CSS = """
.wrap:has(> span.error) { display: none !important; }
"""


def build_app(studio: Studio, wake_worker: Callable[[], None] | None = None, farm: Any = None) -> gr.Blocks:
    with gr.Blocks(title="Continuity", css=PAGE_CSS) as demo:
        gr.Markdown(
            "# Continuity\nLong-form AI video with characters that stay themselves from shot to shot.\n\n"
            f"Data directory: `{studio.data_dir}`",
            elem_id="header",
        )
        ctx = common.Context(
            studio=studio,
            wake_worker=wake_worker or (lambda: None),
            farm=farm,
            project=gr.State(None),
            shot=gr.State(None),
            changed=gr.State(0),
            page=demo,
            goto=gr.State(None),
        )
        built = []
        with gr.Tabs() as tabs:
            ctx.tabs = tabs
            for title, panel in PANELS:
                with gr.Tab(title, id=title.lower(), elem_id=f"tab-{title.lower()}"):
                    built.append((panel, panel.build(ctx)))
        for panel, widgets in built:
            panel.wire(ctx, widgets)
    return demo
