"""Checking image files before they enter the studio.

Pillow's own decompression-bomb limit stays on (``Image.MAX_IMAGE_PIXELS`` is never cleared); on top of it
the studio refuses images larger than any video model takes, so a single upload cannot exhaust memory.
The whole image is decoded once, because only a full decode finds a truncated file. Its size is the size it is
shown at: a photo with an EXIF orientation is turned upright wherever it is used (:mod:`pipelines.pictures`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipelines.pictures import upright_size
from projects.errors import InvalidImage

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 36_000_000  # 8K UHD is 33.2 megapixels
MAX_IMAGE_SIDE = 12_000
FORMATS = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp"}  # MPO: a JPEG with extra pictures


@dataclass(frozen=True)
class CheckedImage:
    path: Path
    extension: str
    width: int
    height: int


def check_image(path: Path, field: str = "image") -> CheckedImage:
    """Open and fully decode ``path``; raise :class:`InvalidImage` saying what is wrong with it."""
    path = Path(path)
    shown = path.name or str(path)
    if not path.is_file():
        raise InvalidImage(f"file not found: {path}", field)
    size = path.stat().st_size
    if size == 0:
        raise InvalidImage(f"{shown} is empty (0 bytes)", field)
    if size > MAX_IMAGE_BYTES:
        raise InvalidImage(f"{shown} is {size / 2**20:.0f} MiB; the limit is {MAX_IMAGE_BYTES // 2**20} MiB", field)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                kind = image.format
                if kind not in FORMATS:
                    raise InvalidImage(f"{shown} is a {kind} image; use PNG, JPEG or WebP", field)
                if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
                    raise InvalidImage(
                        f"{shown} is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS // 1_000_000} "
                        f"megapixels and {MAX_IMAGE_SIDE} pixels a side",
                        field,
                    )
                image.load()
                width, height = upright_size(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidImage(f"{shown} declares an enormous size (a decompression bomb); refused", field) from None
        except UnidentifiedImageError:
            raise InvalidImage(f"{shown} is not an image Continuity can read (PNG, JPEG or WebP)", field) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImage(f"{shown} is truncated or damaged ({exc})", field) from None
    if width < 1 or height < 1:
        raise InvalidImage(f"{shown} has no pixels", field)
    return CheckedImage(path=path, extension=FORMATS[kind], width=width, height=height)
