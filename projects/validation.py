"""Checks on the values users type, shared by every service so the rules are the same everywhere."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from pipelines.camera import CameraError, parse_camera
from projects.errors import InvalidInput
from storage.models import MAX_SHOT_SECONDS

MAX_NAME_LENGTH = 120
MAX_PROMPT_LENGTH = 4000
MAX_DESCRIPTION_LENGTH = 2000  # a character's description
MAX_REFERENCES = 32  # reference images of one character
MIN_SIDE, MAX_SIDE = 64, 4096


def clean_name(value: Any, field: str = "name") -> str:
    """A project or character name: trimmed, NFC-normalised, safe to show and to use in a file name.

    Any language and emoji are fine; path separators, '..', control characters and blank names are not.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"must be text, got {_kind(value)}", field)
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise InvalidInput("must not be empty or only spaces", field)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}", field)
    if "/" in name or "\\" in name:
        raise InvalidInput("must not contain '/' or '\\'", field)
    if ".." in name or set(name) == {"."}:
        raise InvalidInput("must not contain '..' or be only dots", field)
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("must not contain control characters (NUL, tabs, line breaks)", field)
    return name


def name_key(name: str) -> str:
    """What two names are compared on: 'Mara' and 'MARA' are the same character."""
    return unicodedata.normalize("NFC", name).casefold()


def clean_text(value: Any, field: str, *, max_length: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a scene numbered 1 in a spreadsheet
    if not isinstance(value, str):
        raise InvalidInput(f"must be text, got {_kind(value)}", field)
    text = unicodedata.normalize("NFC", value).strip()
    if required and not text:
        raise InvalidInput("must not be empty", field)
    if "\x00" in text:
        raise InvalidInput("must not contain NUL characters", field)
    if len(text) > max_length:
        raise InvalidInput(f"is {len(text)} characters long; the limit is {max_length}", field)
    return text


def clean_prompt(value: Any, field: str = "prompt") -> str:
    return clean_text(value, field, max_length=MAX_PROMPT_LENGTH, required=True)


def clean_duration(value: Any, field: str = "duration") -> float:
    number = _number(value, field, "a number of seconds")
    if not math.isfinite(number) or number <= 0:
        raise InvalidInput(f"must be more than 0 seconds, got {value!r}", field)
    if number > MAX_SHOT_SECONDS:
        raise InvalidInput(f"is {number:g} seconds; a shot may last at most {MAX_SHOT_SECONDS / 60:g} minutes", field)
    return number


# The largest seed a take may have: 32 bits, which every backend's generator takes as it is (the page, the
# command line, bundles and storyboards all check against this one value).
MAX_SEED = 2**31 - 1


def clean_seed(value: Any, field: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidInput(f"must be a whole number from 0 to {MAX_SEED}, got {value!r}", field)
    return value


MAX_PRIORITY = 1000  # a job's priority is from -MAX_PRIORITY to MAX_PRIORITY; higher runs sooner


def clean_priority(value: Any, field: str = "priority") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidInput(f"must be a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY}, got {value!r}", field)
    return value


def clean_fps(value: Any, field: str = "fps") -> int:
    fps = _whole(value, field)
    if not 1 <= fps <= 120:
        raise InvalidInput(f"must be between 1 and 120, got {fps}", field)
    return fps


def clean_side(value: Any, field: str) -> int:
    side = _whole(value, field)
    if not MIN_SIDE <= side <= MAX_SIDE or side % 8:
        raise InvalidInput(f"must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE} pixels, got {side}", field)
    return side


def clean_camera(value: Any, field: str = "camera") -> str:
    try:
        return parse_camera(value).text
    except CameraError as exc:
        raise InvalidInput(str(exc), field) from None


def clean_seconds(value: Any, field: str, limit: float, *, allow_zero: bool = False) -> float:
    """A finite number of seconds above 0 (or 0 with ``allow_zero``), at most ``limit``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"must be a number of seconds, got {value!r}", field)
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"must be more than 0 seconds, got {value:g}", field)
    if value > limit:
        raise InvalidInput(f"is {value:g} s; the limit is {limit:g} s", field)
    return float(value)


def clean_flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"", "0", "false", "no", "n"}:
        return False
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "y"}:
        return True
    if value is None:
        return False
    raise InvalidInput(f"must be true or false, got {value!r}", field)


def _number(value: Any, field: str, what: str) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"must be {what}, got {value!r}", field)
    shown = _shown(value)
    try:
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str) and value.strip().isascii():
            number = float(value.strip())
        else:
            raise InvalidInput(f"must be {what}, got {shown}", field)
    except OverflowError:
        raise InvalidInput(f"must be {what}; {shown} is far too large", field) from None
    except ValueError:
        raise InvalidInput(f"must be {what}, got {shown}", field) from None
    if not math.isfinite(number):
        raise InvalidInput(f"must be {what}, a finite one; got {shown}", field)
    return number


def _shown(value: Any) -> str:
    """A value as a message shows it: a number of a thousand digits is not repeated back whole."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _whole(value: Any, field: str) -> int:
    number = _number(value, field, "a whole number")
    if not math.isfinite(number) or number != int(number):
        raise InvalidInput(f"must be a whole number, got {value!r}", field)
    return int(number)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
