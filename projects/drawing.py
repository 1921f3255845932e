"""Drawing text on pictures for exports: title cards, and the fonts, fitting and colours the contact sheet shares.

Pillow's own font is used (scalable where Pillow has FreeType, else its fixed bitmap font), so a film or a sheet
draws the same on every machine without looking for system fonts.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFont

from projects.errors import InvalidInput


def title_card_picture(text: str, width: int, height: int, background: str, color: str) -> Image.Image:
    """A title card: ``text`` centred on a plain ``background``, its first line larger than the rest."""
    image = Image.new("RGB", (width, height), colour(background, "title_background"))
    draw = ImageDraw.Draw(image)
    lines = text.splitlines() or [""]
    size = max(8, height // 8)
    fonts = [font(size)] + [font(max(8, size * 2 // 3))] * (len(lines) - 1)
    fitted = [fit_text(draw, line, face, width - width // 10) for line, face in zip(lines, fonts, strict=True)]
    heights = [draw.textbbox((0, 0), line or " ", font=face)[3] for line, face in zip(fitted, fonts, strict=True)]
    spacing = size // 3
    y = (height - sum(heights) - spacing * (len(lines) - 1)) / 2
    for line, face, line_height in zip(fitted, fonts, heights, strict=True):
        draw.text((width / 2, y), line, font=face, fill=colour(color, "title_color"), anchor="ma")
        y += line_height + spacing
    return image


def colour(value: str, field: str) -> tuple[int, int, int]:
    """``value`` (``'#202020'``, ``'navy'``...) as RGB; anything else is refused, naming ``field``."""
    try:
        return ImageColor.getrgb(value)[:3]
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{value!r} is not a colour (try '#202020' or 'navy')", field) from None


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels, or its fixed bitmap font where it cannot scale."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def fit_text(draw: ImageDraw.ImageDraw, text: str, face: Any, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=face) <= width:
        return text
    while text and draw.textlength(text + "…", font=face) > width:
        text = text[:-1]
    return text.rstrip() + "…"
