"""The export service: a project's film, and a timeline and a storyboard contact sheet beside it, in one call.

:func:`export_project` checks every output path first (a bad one changes nothing and writes nothing), plans the
edit once (:func:`projects.edit_plan.plan_edit`: every take file re-hashed), writes the film from it
(:mod:`projects.film`), the timeline from the same plan (:mod:`projects.timeline`), and the contact sheet
(:mod:`projects.contact_sheet`). Each file is written whole (:mod:`projects.output_files`): an export that fails
leaves nothing half-written at an output path. :func:`export_stem` names the files when the user names none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from projects.contact_sheet import CONTACT_SHEET_SUFFIXES, ContactSheetResult, write_contact_sheet
from projects.edit_plan import ExportOptions, Progress, plan_edit
from projects.errors import InvalidInput
from projects.film import FILM_SUFFIXES, FilmResult, write_film
from projects.output_files import check_output_path, together
from projects.studio import Studio
from projects.timeline import TIMELINE_ADAPTERS, TimelineResult, write_timeline

EXPORTS_FOLDER = "exports"  # in the data directory: what the studio writes unless told where


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_project` wrote: the film, and the timeline and contact sheet when asked for."""

    film: FilmResult
    timeline: TimelineResult | None = None
    contact_sheet: ContactSheetResult | None = None

    @property
    def path(self) -> Path:
        """The film's path."""
        return self.film.path

    @property
    def files(self) -> list[Path]:
        """Every file written: the film first, then the timeline and the contact sheet."""
        made = [self.film.path]
        made += [item.path for item in (self.timeline, self.contact_sheet) if item is not None]
        return made

    def to_json(self) -> dict[str, Any]:
        return {
            "film": self.film.to_json(),
            "timeline": self.timeline.to_json() if self.timeline is not None else None,
            "contact_sheet": self.contact_sheet.to_json() if self.contact_sheet is not None else None,
        }


def export_project(
    studio: Studio,
    project: str | int,
    out: Path | str,
    *,
    timeline: Path | str | None = None,
    contact_sheet: Path | str | None = None,
    options: ExportOptions | None = None,
    self_contained: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the project's film to ``out`` (an ``.mp4``), and a timeline (``.otio``, ``.xml``, ``.edl`` or
    ``.kdenlive``; with ``self_contained`` its media copied beside it) and a contact sheet (``.png`` or ``.pdf``)
    where asked for, all from one plan of the edit as ``options`` ask.

    Bad input names its field: ``out``, ``timeline``, ``contact_sheet``, ``self_contained``, or the option's.
    ``progress`` hears the stages ``verify``, then ``copy`` or ``encode``.
    """
    film_path = check_output_path(out, FILM_SUFFIXES, "out")
    timeline_path = None
    if timeline is not None:
        timeline_path = check_output_path(timeline, tuple(TIMELINE_ADAPTERS), "timeline")
    elif self_contained:
        raise InvalidInput("copies the media next to a timeline: give a timeline path too", "self_contained")
    sheet_path = None
    if contact_sheet is not None:
        sheet_path = check_output_path(contact_sheet, CONTACT_SHEET_SUFFIXES, "contact_sheet")

    edit = plan_edit(studio, project, options, progress=progress)
    with together():  # all of the export, or none of it: a failed timeline leaves an earlier film in place
        film = write_film(edit, film_path, progress)
        made_timeline = None
        if timeline_path is not None:
            made_timeline = write_timeline(edit, timeline_path, self_contained=self_contained)
        sheet = write_contact_sheet(studio, edit.project.id, sheet_path) if sheet_path is not None else None
    return ExportResult(film, made_timeline, sheet)


def export_stem(studio: Studio, project_name: str, *, create: bool = True) -> Path:
    """Where an export goes when the user names no path: ``exports/<project>/<project>-<UTC time>`` (add the
    suffix), with ``-2``, ``-3``... when an export of the same second is there already, so every export is kept.
    The folder is created unless ``create`` is False."""
    safe = re.sub(r"[^\w\-]+", "-", project_name, flags=re.UNICODE).strip("-") or "film"
    folder = studio.data_dir / EXPORTS_FOLDER / safe
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    base = f"{safe}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    taken = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    stem, count = base, 1
    while any(name == stem or name.startswith((f"{stem}.", f"{stem}-storyboard.")) for name in taken):
        count += 1
        stem = f"{base}-{count}"
    return folder / stem
