"""Errors the studio's services raise, with messages written for the person using the studio.

The UI and the command line show ``str(error)`` as it is, so a message names the thing (project, shot,
field) and says what to do. Anything that is not a :class:`StudioError` is a bug.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: the request could not be carried out, and nothing was changed."""


class NotFound(StudioError):
    """A project, character, shot or take that does not exist (any more)."""


class InvalidInput(StudioError):
    """A value the studio cannot accept. ``field`` names where it came from, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message

    def within(self, prefix: str) -> InvalidInput:
        """The same error, located inside ``prefix`` (for example a storyboard's ``shots[3]``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return type(self)(self.reason, field)


class InvalidImage(InvalidInput):
    """A file that is not an image the studio can use (unreadable, truncated, too large, a bomb)."""


class Conflict(StudioError):
    """The request clashes with what exists: a duplicate name, a take that is not finished yet."""
