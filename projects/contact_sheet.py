"""The storyboard contact sheet: every shot's picture with its number, title, duration and camera, as one PNG or
one PDF page.

Each shot shows the picture the storyboard shows for it (one rule, :func:`projects.queries.shot_infos`): the
approved take's thumbnail, else the newest finished take's, else its keyframe, else a grey box.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from sqlalchemy import select

from pipelines.pictures import open_rgb
from projects import queries
from projects.drawing import fit_text, font
from projects.errors import Conflict
from projects.output_files import check_output_path, replacing
from projects.records import ProjectInfo
from projects.studio import Studio
from storage.models import Shot

log = logging.getLogger(__name__)

CONTACT_SHEET_SUFFIXES = (".png", ".pdf")

# Contact sheet layout, in pixels.
SHEET_COLUMNS = 4
SHEET_CELL_WIDTH = 240
SHEET_GAP = 16
SHEET_HEADER = 44
SHEET_TEXT_LINES = 2
SHEET_LINE_HEIGHT = 18
SHEET_BACKGROUND = (250, 250, 247)
SHEET_EMPTY_PICTURE = (128, 128, 128)  # a shot with no picture yet: a plain grey box
SHEET_PDF_DPI = 96


@dataclass(frozen=True)
class ContactSheetResult:
    """What :func:`write_contact_sheet` wrote."""

    path: Path
    shots: int
    columns: int
    rows: int
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "shots": self.shots,
            "columns": self.columns,
            "rows": self.rows,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True)
class _SheetShot:
    number: int
    title: str
    prompt: str
    duration: float
    camera: str
    picture: Path | None


def write_contact_sheet(studio: Studio, project: str | int, out_path: Path | str) -> ContactSheetResult:
    """Every shot of the storyboard in a grid: its picture as the storyboard shows it (the approved take's thumbnail,
    else the newest finished take's, else its keyframe, else a grey box), number, title, duration and camera; one
    PNG, or one PDF page."""
    out = check_output_path(out_path, CONTACT_SHEET_SUFFIXES, "contact_sheet")
    with studio.read() as session:
        row = queries.find_project(session, project)
        info = queries.project_info(session, row)
        shots = _sheet_shots(session, studio, row.id)
    if not shots:
        raise Conflict(f"project {info.name!r} has no shots for a contact sheet")
    sheet, columns, rows = contact_sheet_image(info, shots)
    with replacing(out, "contact_sheet") as temp:
        if out.suffix.lower() == ".pdf":
            sheet.save(temp, format="PDF", resolution=SHEET_PDF_DPI)
        else:
            sheet.save(temp, format="PNG")
    return ContactSheetResult(out, len(shots), columns, rows, sheet.width, sheet.height)


def _sheet_shots(session: Any, studio: Studio, project_id: int) -> list[_SheetShot]:
    """The shots with the picture the storyboard shows for each (one rule, :func:`queries.shot_infos`)."""
    shots = session.scalars(
        select(Shot).where(Shot.project_id == project_id).order_by(Shot.position).options(*queries.SHOT_LOADING)
    ).all()
    return [
        _SheetShot(info.number, info.title, info.prompt, info.duration, info.camera, info.picture)
        for info in queries.shot_infos(session, studio.media, shots)
    ]


def contact_sheet_layout(shots: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``(columns, rows, cell width, picture height)`` of a sheet of ``shots`` from a ``width`` x ``height`` film."""
    columns = min(SHEET_COLUMNS, max(1, shots))
    rows = math.ceil(shots / columns)
    picture_height = max(1, round(SHEET_CELL_WIDTH * height / width))
    return columns, rows, SHEET_CELL_WIDTH, picture_height


def contact_sheet_size(shots: int, width: int, height: int) -> tuple[int, int]:
    """The sheet's pixel size: a header, then rows of cells (picture and two lines of text) with gaps around."""
    columns, rows, cell_width, picture_height = contact_sheet_layout(shots, width, height)
    cell_height = picture_height + SHEET_TEXT_LINES * SHEET_LINE_HEIGHT + SHEET_GAP // 2
    return (
        columns * cell_width + (columns + 1) * SHEET_GAP,
        SHEET_HEADER + rows * cell_height + (rows + 1) * SHEET_GAP,
    )


def contact_sheet_image(info: ProjectInfo, shots: Sequence[_SheetShot]) -> tuple[Image.Image, int, int]:
    """The sheet of ``shots`` as one picture, with its number of columns and rows."""
    columns, rows, cell_width, picture_height = contact_sheet_layout(len(shots), info.width, info.height)
    size = contact_sheet_size(len(shots), info.width, info.height)
    cell_height = picture_height + SHEET_TEXT_LINES * SHEET_LINE_HEIGHT + SHEET_GAP // 2
    sheet = Image.new("RGB", size, SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    heading, text_font = font(20), font(13)
    total = sum(shot.duration for shot in shots)
    draw.text(
        (SHEET_GAP, SHEET_GAP),
        fit_text(draw, f"{info.name} · {len(shots)} shots · {total:.1f} s", heading, size[0] - 2 * SHEET_GAP),
        font=heading,
        fill=(20, 20, 20),
    )
    for index, shot in enumerate(shots):
        column, row = index % columns, index // columns
        x = SHEET_GAP + column * (cell_width + SHEET_GAP)
        y = SHEET_HEADER + SHEET_GAP + row * (cell_height + SHEET_GAP)
        sheet.paste(sheet_picture(shot.picture, cell_width, picture_height), (x, y))
        title = shot.title or shot.prompt
        lines = [f"{shot.number}  {title}", f"{shot.duration:g} s · {shot.camera}"]
        for line_index, line in enumerate(lines):
            draw.text(
                (x, y + picture_height + 4 + line_index * SHEET_LINE_HEIGHT),
                fit_text(draw, line, text_font, cell_width),
                font=text_font,
                fill=(30, 30, 30) if line_index == 0 else (90, 90, 90),
            )
    return sheet, columns, rows


def sheet_picture(path: Path | None, width: int, height: int) -> Image.Image:
    """The picture (upright, wide samples scaled: :func:`pipelines.pictures.open_rgb`) fitted inside the cell on
    black (its aspect kept), or a grey box where there is none."""
    box = Image.new("RGB", (width, height), SHEET_EMPTY_PICTURE)
    if path is None:
        return box
    try:
        picture = open_rgb(path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        log.warning("contact sheet: cannot read %s (%s); leaving a grey box", path, exc)
        return box
    picture = ImageOps.contain(picture, (width, height), Image.Resampling.LANCZOS)
    if picture.size != (width, height):
        framed = Image.new("RGB", (width, height), (0, 0, 0))
        framed.paste(picture, ((width - picture.width) // 2, (height - picture.height) // 2))
        picture = framed
    return picture
