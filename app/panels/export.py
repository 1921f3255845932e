"""Export: the cut (the approved takes as a timeline, with a play-through and what an export would warn about),
then the film (mp4) and a timeline for an editor, written into the data directory's exports folder and offered for
download, plus the storyboard contact sheet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gradio as gr

from app.panels import cut
from app.panels.common import Context, need_project, user_errors
from projects import cut as saved_cut
from projects import export, project
from projects.board import board
from projects.cut import ShotCut
from projects.edit_plan import ExportOptions
from projects.errors import InvalidInput

AUDIO_TYPES = [".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac"]
TIMELINES = {"none": None, "OpenTimelineIO (.otio)": ".otio", "Final Cut Pro 7 XML (.xml)": ".xml"}
TIMELINES |= {"CMX 3600 EDL (.edl)": ".edl", "Kdenlive (.kdenlive)": ".kdenlive"}
CUT_COLUMNS = ["shot", "title", "in (s)", "out (s)", "crossfade into it (s)", "title card before it"]


def cut_rows(shots: list[ShotCut]) -> list[list[Any]]:
    """One row a shot with its saved cut: the table the filmmaker edits (an empty out point: to the take's end,
    an empty crossfade: the export's)."""
    return [[s.number, s.title, s.cut_in, s.cut_out, s.crossfade, s.card] for s in shots]


def cut_edits(rows: Any) -> dict[int, dict[str, Any]]:
    """The cut values of every row of the edited table, by shot number, for :func:`projects.cut.save_cut`; a value
    that is not a number is refused, naming its row (the service checks the ranges)."""
    if rows is None:
        return {}
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
    edits: dict[int, dict[str, Any]] = {}
    for index, row in enumerate(values, start=1):
        if len(row) < len(CUT_COLUMNS):
            raise InvalidInput(f"has {len(row)} values, not {len(CUT_COLUMNS)}", f"cut row {index}")
        shot, _title, start, end, fade, text = row[: len(CUT_COLUMNS)]
        try:
            number = int(shot)
            edits[number] = {
                "cut_in": 0.0 if _blank(start) else float(start),
                "cut_out": None if _blank(end) else float(end),
                "crossfade": None if _blank(fade) else float(fade),
                "card": "" if _blank(text) else str(text),
            }
        except (TypeError, ValueError):
            raise InvalidInput(
                "in, out and crossfade are seconds, as numbers", f"cut row {index} (shot {shot})"
            ) from None
    return edits


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["cut"] = gr.HTML(cut.cut_html(None), css_template=cut.CSS, js_on_load=cut.JS, elem_id="cut")
    with gr.Accordion("Trims, crossfades and title cards", open=False, elem_id="cut-edits"):
        gr.Markdown(
            "Per shot: where its approved take starts and ends in the film (seconds into the take; an empty out "
            "point keeps it to its end), the dissolve into it (empty: the crossfade below; 0: a hard cut), and the "
            "text of a title card before it. Saved with the project as you type; every export uses them."
        )
        w["edits"] = gr.Dataframe(
            headers=CUT_COLUMNS,
            datatype=["number", "str", "number", "number", "number", "str"],
            static_columns=[0, 1],
            interactive=True,
            row_count=(0, "fixed"),
            col_count=(len(CUT_COLUMNS), "fixed"),
            elem_id="cut-edit-table",
        )
    with gr.Row():
        w["crossfade"] = gr.Number(
            label="Crossfade where a shot sets none (seconds, 0 for cuts)", value=0, minimum=0, maximum=10
        )
        w["titles"] = gr.Checkbox(label="Title cards (the project, and each scene)", value=False)
        w["missing"] = gr.Dropdown(
            label="Shots without an approved take",
            choices=[("refuse to export", "refuse"), ("black placeholder", "black"), ("leave out", "skip")],
            value="refuse",
        )
    with gr.Row():
        w["timeline"] = gr.Dropdown(label="Timeline", choices=list(TIMELINES), value="none", elem_id="timeline-format")
        w["sheet"] = gr.Checkbox(label="Storyboard contact sheet (PNG)", value=True)
        w["audio"] = gr.File(label="Music (optional)", file_types=AUDIO_TYPES, elem_id="export-audio")
    w["run"] = gr.Button("Export", variant="primary", elem_id="run-export")
    w["summary"] = gr.Markdown("", elem_id="export-summary")
    w["film"] = gr.Video(label="Film", interactive=False, elem_id="export-film")
    w["files"] = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="export-files")
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    @user_errors
    def run(
        project_id: int | None,
        crossfade: float,
        titles: bool,
        missing: str,
        timeline: str,
        sheet: bool,
        audio: Any,
        edits: Any = None,
    ) -> tuple[Any, ...]:
        info = project.get_project(ctx.studio, need_project(project_id))
        stem = export.export_stem(ctx.studio, info.name)
        saved_cut.save_cut(ctx.studio, info.id, cut_edits(edits))  # what the table shows is what is exported
        options = ExportOptions(
            crossfade=float(crossfade or 0),
            titles=bool(titles),
            audio=Path(audio) if audio else None,
            allow_missing=None if missing in (None, "refuse") else missing,
        )
        suffix = TIMELINES.get(timeline)
        made = export.export_project(
            ctx.studio,
            info.id,
            f"{stem}.mp4",
            timeline=f"{stem}{suffix}" if suffix else None,
            contact_sheet=f"{stem}-storyboard.png" if sheet else None,
            options=options,
        )
        film = made.film
        lines = [
            f"**{film.path.name}**: {film.seconds:.1f} s, {film.width}x{film.height} at {film.fps} fps ({film.method})"
        ]
        if film.skipped_shots:
            lines.append(f"Left out, with no approved take: shots {', '.join(map(str, film.skipped_shots))}.")
        if film.placeholder_shots:
            shots = ", ".join(map(str, film.placeholder_shots))
            lines.append(f"Black placeholders where no take is approved: shots {shots}.")
        stale = [card.number for card in board(ctx.studio, info.id).shots if card.stale]
        if stale:
            lines.append(f"Stale shots in this film (their take no longer matches): {', '.join(map(str, stale))}.")
        cut, contact = made.timeline, made.contact_sheet
        if cut is not None:
            lines.append(f"Timeline **{cut.path.name}**: {cut.clips} clips, {cut.seconds:.1f} s")
        if contact is not None:
            lines.append(f"Contact sheet **{contact.path.name}**: {contact.shots} shots")
        return "\n\n".join(lines), str(film.path), [str(path) for path in made.files]

    def show(project_id: int | None) -> tuple[str, Any]:
        if not project_id:
            return cut.cut_html(None), []
        shots = saved_cut.the_cut(ctx.studio, project_id)
        return cut.cut_html(board(ctx.studio, project_id), shots), cut_rows(shots)

    @user_errors
    def save(project_id: int | None, edited: Any) -> str:
        project_id = need_project(project_id)
        saved_cut.save_cut(ctx.studio, project_id, cut_edits(edited))
        return cut.cut_html(board(ctx.studio, project_id), saved_cut.the_cut(ctx.studio, project_id))

    for trigger in (ctx.project.change, ctx.changed.change):
        trigger(show, inputs=[ctx.project], outputs=[w["cut"], w["edits"]], api_name=False, show_progress="hidden")
    w["edits"].input(
        save, inputs=[ctx.project, w["edits"]], outputs=[w["cut"]], api_name="save_cut", show_progress="hidden"
    )

    w["run"].click(
        run,
        inputs=[
            ctx.project,
            w["crossfade"],
            w["titles"],
            w["missing"],
            w["timeline"],
            w["sheet"],
            w["audio"],
            w["edits"],
        ],
        outputs=[w["summary"], w["film"], w["files"]],
        api_name="export",
        concurrency_limit=1,
    )
