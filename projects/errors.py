"""Errors the studio's services raise, with messages written for the person using the studio.

The UI and the command line show ``str(error)`` as it is, so a message names the thing (project, shot,
field) and says what to do. Anything that is not a :class:`StudioError` is a bug.
"""

from __future__ import annotations

import errno


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


class Unavailable(StudioError):
    """Something outside the request stopped it: a full disk, a read-only folder, a database in use."""


_OS_WORDS = {
    errno.ENOSPC: "the disk is full; free some space and try again",
    errno.EDQUOT: "the disk quota is used up; free some space and try again",
    errno.EROFS: "the file system is read-only here",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EISDIR: "a folder stands where a file is needed",
    errno.ENAMETOOLONG: "the name is too long",
}


def in_words(exc: BaseException) -> StudioError | None:
    """The error a front end shows for ``exc`` when a service did not raise a :class:`StudioError` itself: a full
    disk, a read-only folder, a busy database, input nested too deeply to read. None for anything else (a bug).

    The command line, the Python API and the page all pass what escapes a service through here, so no traceback
    reaches the person using the studio for what is not a bug.
    """
    if isinstance(exc, StudioError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _OS_WORDS:
        where = f" ({exc.filename})" if exc.filename else ""
        return Unavailable(f"{_OS_WORDS[exc.errno]}{where}")
    if isinstance(exc, RecursionError):
        return InvalidInput("it is nested too deeply to read; simplify it")
    if isinstance(exc, ValueError) and "null byte" in str(exc):
        return InvalidInput("a name or path contains a NUL character, which no file name may hold")
    if isinstance(exc, OverflowError):
        return InvalidInput(f"a number is too large ({exc})")
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the database driver's error
    if type(exc).__name__ in {"OperationalError", "DatabaseError"} and orig is not None:
        text = str(orig)
        if "locked" in text or "busy" in text:
            return Unavailable(f"the database is busy ({text}); try again in a moment")
        if "full" in text:
            return Unavailable("the disk is full; free some space and try again")
        if "readonly" in text or "read-only" in text:
            return Unavailable("the data directory is read-only here; choose one you can write to")
    return None
