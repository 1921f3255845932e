"""The studio's camera grammar, read by every backend.

Two spellings are accepted:

- SANA-WM's action string, ``w-32,jw-16``: comma-separated segments ``<keys>-<frames>``. W/A/S/D move the
  camera forward/left/back/right, I/J/K/L look up/left/down/right, ``none`` holds; keys held together
  combine. Counts are in frames.
- A named preset (``static``, ``dolly-in``, ``pan-left``, ...) that stretches over the whole shot and
  expands to an action string once the shot's frame count is known.

Parsing is pure Python so that a shot list is validated before anything is queued, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTION_KEYS = frozenset("wasdijkl")
MAX_FRAMES = 600 * 120  # ten minutes at 120 fps

PRESETS: dict[str, str] = {
    "static": "",
    "dolly-in": "w",
    "dolly-out": "s",
    "truck-left": "a",
    "truck-right": "d",
    "pan-left": "j",
    "pan-right": "l",
    "tilt-up": "i",
    "tilt-down": "k",
    # Orbiting keeps the subject centred: move sideways while turning back towards it.
    "orbit-left": "al",
    "orbit-right": "dj",
}


class CameraError(ValueError):
    """A camera string that is neither a preset nor a valid action string."""


@dataclass(frozen=True)
class CameraMove:
    keys: frozenset[str]  # empty for a hold
    frames: int | None  # None: stretch over the whole shot (presets)

    def action(self, frames: int) -> str:
        keys = "".join(sorted(self.keys)) or "none"
        return f"{keys}-{frames}"


@dataclass(frozen=True)
class CameraPath:
    text: str  # normalised spelling, what the studio stores
    preset: str | None
    moves: tuple[CameraMove, ...]

    @property
    def frame_count(self) -> int | None:
        """Steps the path spells out (a shot of N frames has N - 1), or None for a preset, which fits any length."""
        if self.preset is not None:
            return None
        return sum(move.frames or 0 for move in self.moves)

    def check_fits(self, frames: int) -> None:
        """Refuse a path that does not fit a shot of ``frames`` frames: a preset fits any length; a spelled-out
        path must take exactly ``frames - 1`` steps (the first frame is where the camera starts).

        The one rule for every place that pairs a camera with a frame count: the render queue, each backend's
        request check, and the windows of a long shot.
        """
        if self.preset is None and self.frame_count != frames - 1:
            raise CameraError(
                f"the camera path {self.text!r} is {self.frame_count} steps but the shot has {frames} frames "
                f"({frames - 1} steps); change the counts or use a preset such as 'dolly-in'"
            )

    def to_action(self, steps: int) -> str:
        """The action string for ``steps`` camera steps: a shot of N frames moves N - 1 times after its first."""
        if steps <= 0:
            raise CameraError(f"a camera path needs at least one step, got {steps}")
        if self.preset is not None:
            return self.moves[0].action(steps)
        self.check_fits(steps + 1)
        return ",".join(move.action(move.frames or 0) for move in self.moves)


def keys_per_step(path: CameraPath, steps: int) -> list[frozenset[str]]:
    """The keys held at each of ``steps`` camera steps (a preset holds its keys throughout)."""
    if path.preset is not None:
        return [path.moves[0].keys] * steps
    path.to_action(steps)  # raises when the path does not have exactly ``steps`` steps
    held: list[frozenset[str]] = []
    for move in path.moves:
        held.extend([move.keys] * (move.frames or 0))
    return held


def parse_camera(text: str | None) -> CameraPath:
    """Parse a preset name or an action string; raise :class:`CameraError` saying what is wrong."""
    if text is None:
        text = "static"
    if not isinstance(text, str):
        raise CameraError(f"the camera must be text, got {type(text).__name__}")
    cleaned = "".join(text.replace("，", ",").split()).lower()
    if not cleaned:
        return parse_camera("static")
    if cleaned in PRESETS:
        return CameraPath(cleaned, cleaned, (CameraMove(frozenset(PRESETS[cleaned]), None),))
    moves = []
    for segment in cleaned.split(","):
        keys_part, sep, count = segment.rpartition("-")
        if not segment or not sep or not keys_part:
            raise CameraError(_unknown(text, segment))
        # ASCII digits only ("٣" is a digit to Python, and would be stored and sent on to a backend as "3"), and
        # few enough of them to be a frame count at all.
        if not (count.isascii() and count.isdigit()) or len(count) > 7 or int(count) <= 0:
            raise CameraError(f"camera segment {segment!r} needs a positive frame count after '-' (digits 0-9)")
        if keys_part == "none":
            keys: frozenset[str] = frozenset()
        else:
            bad = sorted(set(keys_part) - ACTION_KEYS)
            if bad:
                raise CameraError(_unknown(text, segment, bad))
            keys = frozenset(keys_part)
        moves.append(CameraMove(keys, int(count)))
    path = CameraPath(",".join(move.action(move.frames or 0) for move in moves), None, tuple(moves))
    if (path.frame_count or 0) > MAX_FRAMES:
        raise CameraError(f"camera path {text!r} is {path.frame_count} frames long; the limit is {MAX_FRAMES}")
    return path


def _unknown(text: str, segment: str, bad: list[str] | None = None) -> str:
    presets = ", ".join(PRESETS)
    detail = f" has unknown keys {''.join(bad)}" if bad else " is not '<keys>-<frames>'"
    return (
        f"camera {text!r}: segment {segment!r}{detail}. Use a preset ({presets}) or an action string "
        "such as 'w-32,jw-16' (W/A/S/D move, I/J/K/L look, 'none' holds)"
    )
