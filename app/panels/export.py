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
from projects import export, project
from projects.board import Board, board
from projects.edit_plan import ExportOptions, TitleCard, Trim
from projects.errors import InvalidInput

AUDIO_TYPES = [".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac"]
TIMELINES = {"none": None, "OpenTimelineIO (.otio)": ".otio", "Final Cut Pro 7 XML (.xml)": ".xml"}
TIMELINES |= {"CMX 3600 EDL (.edl)": ".edl", "Kdenlive (.kdenlive)": ".kdenlive"}
CUT_COLUMNS = ["shot", "title", "in (s)", "out (s)", "title card before it"]


def cut_rows(found: Board | None) -> list[list[Any]]:
    """One row a shot, with nothing trimmed and no card: the table the filmmaker edits."""
    return [[card.number, card.title, 0, None, ""] for card in found.shots] if found else []


def cut_edits(rows: Any) -> tuple[dict[int, Trim], tuple[TitleCard, ...]]:
    """Trims and title cards from the edited table; a value that is not a number is refused, naming its row."""
    if rows is None:
        return {}, ()
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
    trims: dict[int, Trim] = {}
    cards = []
    for index, row in enumerate(values, start=1):
        if len(row) < len(CUT_COLUMNS):
            raise InvalidInput(f"has {len(row)} values, not {len(CUT_COLUMNS)}", f"cuts row {index}")
        shot, _title, start, end, text = row[: len(CUT_COLUMNS)]
        try:
            number = int(shot)
            start_s = float(start) if start not in (None, "") and not _blank(start) else 0.0
            end_s = float(end) if end not in (None, "") and not _blank(end) else None
        except (TypeError, ValueError):
            raise InvalidInput("in and out points are seconds, as numbers", f"cuts row {index}") from None
        if start_s or end_s is not None:
            trims[number] = Trim(start_s, end_s)
        if isinstance(text, str) and text.strip():
            cards.append(TitleCard(text.strip(), before_shot=number))
    return trims, tuple(cards)


def _blank(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["cut"] = gr.HTML(cut.cut_html(None), css_template=cut.CSS, js_on_load=cut.JS, elem_id="cut")
    with gr.Accordion("Trims and title cards for this export", open=False, elem_id="cut-edits"):
        gr.Markdown(
            "Per cut: where the shot's approved take starts and ends in the film (seconds into the take; an empty "
            "out point keeps it to its end), and the text of a title card before it. They apply to the export below."
        )
        w["edits"] = gr.Dataframe(
            headers=CUT_COLUMNS,
            datatype=["number", "str", "number", "number", "str"],
            static_columns=[0, 1],
            interactive=True,
            row_count=(0, "fixed"),
            col_count=(len(CUT_COLUMNS), "fixed"),
            elem_id="cut-edit-table",
        )
    with gr.Row():
        w["crossfade"] = gr.Number(label="Crossfade (seconds, 0 for cuts)", value=0, minimum=0, maximum=10)
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
        trims, cards = cut_edits(edits)
        options = ExportOptions(
            crossfade=float(crossfade or 0),
            titles=bool(titles),
            trims=trims,
            title_cards=cards,
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

    def show(project_id: int | None, edited: Any) -> tuple[str, Any]:
        found = board(ctx.studio, project_id) if project_id else None
        rows = cut_rows(found)
        kept = {row[0]: row for row in (edited.values.tolist() if hasattr(edited, "values") else edited or [])}
        # The trims and cards typed so far stay where the shot still is.
        rows = [[*row[:2], *kept[row[0]][2:]] if row[0] in kept and len(kept[row[0]]) >= 5 else row for row in rows]
        return cut.cut_html(found), rows

    for trigger in (ctx.project.change, ctx.changed.change):
        trigger(
            show,
            inputs=[ctx.project, w["edits"]],
            outputs=[w["cut"], w["edits"]],
            api_name=False,
            show_progress="hidden",
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
