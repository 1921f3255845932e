"""Continuity from Python, for notebooks and scripts: one import, the same services as the page and the CLI.

    import continuity

    studio = continuity.open("my-films")            # a data directory, created if missing
    film = studio.create_project("The Lighthouse")
    film.add_character("Mara", "a red-haired keeper in a green coat", references=["mara.png"])
    film.add_shot("Mara climbs the stairs", 4.0, characters=["Mara"], camera="dolly-in", keyframe="stairs.png")
    takes = film.render(takes=3)                    # renders now, with a progress bar
    continuity.show(takes[0])                       # plays inline in a notebook
    film.score()                                    # consistency scores, best take per shot
    film.approve_best()
    film.export(timeline=True, contact_sheet=True)  # mp4, .otio and a contact sheet under exports/
    film.pack("lighthouse.zip")                     # a bundle to carry to another machine

Errors are :class:`StudioError` (``InvalidInput``, ``NotFound``, ``Conflict``) with a message to show; a call that
raises has changed nothing.
"""

from continuity.api import ExportResult, Project, RenderFailed, Scores, Studio, show
from continuity.api import open as open  # continuity.open(); kept out of __all__ so a star import spares the built-in
from projects.edit_plan import ExportOptions, TitleCard, Trim
from projects.errors import Conflict, InvalidInput, NotFound, StudioError

__all__ = [
    "Conflict",
    "ExportOptions",
    "ExportResult",
    "InvalidInput",
    "NotFound",
    "Project",
    "RenderFailed",
    "Scores",
    "Studio",
    "StudioError",
    "TitleCard",
    "Trim",
    "show",
]
