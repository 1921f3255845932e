"""Showing takes, films and tables inline in a notebook."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from projects.errors import InvalidInput, NotFound
from projects.records import TakeInfo

MAX_EMBED_BYTES = 256 << 20  # an mp4 is embedded in the notebook (base64); past this, point at the file instead


def video_path(item: Any) -> Path:
    """The mp4 behind a take, an export result or a path."""
    if isinstance(item, TakeInfo):
        if item.video_path is None:
            raise NotFound(f"take {item.id} has no video ({item.status})")
        return item.video_path
    path = getattr(item, "path", item)
    if not isinstance(path, (str, Path)):
        raise InvalidInput(f"cannot show {type(item).__name__}: give a take, an export result or an mp4 path")
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path} does not exist")
    return path


def show_video(path: Path, *, width: int | None = None) -> Any:
    """An IPython video player for the file; a notebook shows it when it is a cell's value or is displayed."""
    from IPython.display import Video

    size = path.stat().st_size
    if size > MAX_EMBED_BYTES:
        return Video(str(path), width=width, html_attributes="controls loop")
    return Video(str(path), embed=True, mimetype="video/mp4", width=width, html_attributes="controls loop")


class Table:
    """Rows shown as an HTML table in a notebook and as aligned text elsewhere."""

    def __init__(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.columns = tuple(columns)
        self.rows = [tuple(row) for row in rows]

    @staticmethod
    def _cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else ""
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        cells = [list(self.columns), *[[self._cell(v) for v in row] for row in self.rows]]
        widths = [max(len(line[i]) for line in cells) for i in range(len(self.columns))]
        return "\n".join("  ".join(value.ljust(w) for value, w in zip(line, widths, strict=True)) for line in cells)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._cell(v))}</td>" for v in row) + "</tr>" for row in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
