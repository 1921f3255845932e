"""Checks on a data directory as a whole: does every stored file still hold the bytes it is named by."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from projects.studio import Studio
from storage import media as media_rows
from storage.media import MediaProblem
from storage.models import MediaObject


@dataclass(frozen=True)
class MediaReport:
    checked: int
    problems: tuple[MediaProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_media(studio: Studio) -> MediaReport:
    """Re-hash every media file the database knows; report the missing and corrupted ones."""
    with studio.read() as session:
        checked = session.scalar(select(func.count()).select_from(MediaObject)) or 0
        problems = media_rows.verify(session, studio.media)
    return MediaReport(checked, tuple(problems))
