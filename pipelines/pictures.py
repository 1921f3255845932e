"""Pictures as the studio uses them: 8-bit RGB, the right way up, and brought to a bounded size for detectors.

Pillow's own ``convert("RGB")`` clips wide samples instead of scaling them, so a 16-bit PNG (mode ``I;16``,
0..65535) or a 32-bit integer or float picture (``I``, ``F``) comes out solid white, and it ignores a JPEG's
EXIF orientation, so a portrait taken on a phone lies on its side. :func:`open_rgb` (a file) and
:func:`to_rgb` (a picture already open) are the one way a picture becomes RGB in the studio.

Detectors (dlib's HOG, OpenCV's Haar cascades) work on a canvas the picture is scaled to. A canvas scaled by the
shorter side alone grows with the picture's aspect ratio: a 12000x4 strip brought to a 256 px shorter side is
768000x256 pixels. :func:`canvas_scale` bounds both sides, so detection costs the same whatever the shape.

numpy is imported only when a wide picture is converted: checking an upload (:mod:`projects.images`) loads no
numerical library, so commands that never touch pixels start quickly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

if TYPE_CHECKING:
    import numpy as np

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
WIDE_MODES = SIXTEEN_BIT_MODES | {"I", "F"}
ORIENTATION = 0x0112  # the EXIF tag
TURNED = frozenset({5, 6, 7, 8})  # orientations that show the stored picture turned a quarter
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, KeyError, TypeError, IndexError)  # what damaged EXIF raises


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """The picture in the file at ``path`` as it is meant to be seen: turned upright as its EXIF orientation
    says, and as 8-bit RGB with wide samples scaled (see :func:`to_rgb`). The file is closed on return."""
    with Image.open(path) as opened:
        return to_rgb(upright(opened))


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation tag says (a loaded copy without the tag); a picture without the
    tag, or whose EXIF cannot be read, comes back as it is stored."""
    try:
        return ImageOps.exif_transpose(image)
    except _EXIF_ERRORS:
        return image.copy()  # damaged EXIF: the pixels themselves are still the picture


def upright_size(image: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of ``image`` as :func:`upright` shows it, without turning any pixels."""
    try:
        orientation = image.getexif().get(ORIENTATION)
    except _EXIF_ERRORS:
        orientation = None
    width, height = image.size
    return (height, width) if orientation in TURNED else (width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB. Palette, grey, CMYK and alpha modes convert as Pillow converts them; wide modes
    are scaled to 0..255 by :func:`eight_bit` rather than clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_MODES:
        import numpy as np

        return Image.fromarray(eight_bit(np.asarray(image), image.mode)).convert("RGB")
    return image.convert("RGB")


def eight_bit(samples: np.ndarray, mode: str) -> np.ndarray:
    """Wide grey samples as ``uint8`` 0..255.

    16-bit modes span 0..65535. ``I`` and ``F`` say nothing of their range, so it is read from the data: a float
    picture within 0..1 is a fraction of white; otherwise values that fit 0..255 are 8-bit, values that fit
    0..65535 are 16-bit, and anything else is stretched from its lowest to its highest value. NaN is black.
    """
    import numpy as np

    data = np.asarray(samples, dtype=np.float32)
    low, top = 0.0, 65535.0
    if mode not in SIXTEEN_BIT_MODES:
        finite = data[np.isfinite(data)]
        least, most = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if least < 0 or most > 65535:
            low, top = least, max(most, least + 1.0)
        elif mode == "F" and most <= 1.0:
            top = 1.0
        elif most <= 255:
            top = 255.0
    scaled = (data - low) * (255.0 / (top - low))
    return np.clip(np.rint(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)), 0, 255).astype(np.uint8)


def canvas_scale(height: int, width: int, short_side: int, long_side: int) -> float:
    """The factor that brings a ``width`` x ``height`` picture to a detector's canvas: its shorter side to
    ``short_side``, unless that would take its longer side past ``long_side``. Either way the canvas holds at
    most ``long_side`` x ``long_side`` pixels, whatever the picture's shape."""
    return min(short_side / max(1, min(height, width)), long_side / max(1, max(height, width)))


def canvas_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(width, height)`` of the canvas at ``scale``: at least one pixel each way."""
    return max(1, round(width * scale)), max(1, round(height * scale))
