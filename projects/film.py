"""Writing the film: a planned edit as one MP4, by stream copy where nothing needs re-encoding, else one encode.

Where no item needs re-encoding (no crossfades, titles, placeholders, music or trims, and every take an H.264
4:2:0 MP4 of the film's size and rate with the same codec configuration) the takes are joined by stream copy
(:func:`stream_copy_clips` decides); otherwise the film is encoded once from a stream of frames
(:mod:`pipelines.edit`), whose memory does not grow with the film's length, with progress reports.

moviepy is not used for the encode: it keeps a reader process open per clip for the whole film and composites
every frame in floating point in Python; on the benchmark's 20 clips at 640x384 it took 1.4-1.8x the time of
ffmpeg's own crossfade graph (the budget is 1.5x), where :mod:`pipelines.edit` takes about 1.1x.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import edit as editing
from pipelines import mp4
from pipelines.ffmpeg import VideoError
from projects.drawing import title_card_picture
from projects.edit_plan import Edit, Progress
from projects.errors import StudioError
from projects.output_files import check_output_path, replacing

log = logging.getLogger(__name__)

FILM_SUFFIXES = (".mp4",)


@dataclass(frozen=True)
class FilmResult:
    """What :func:`write_film` wrote."""

    path: Path
    method: str  # "stream copy" or "encode"
    frames: int
    seconds: float
    width: int
    height: int
    fps: int
    audio: bool
    shots: tuple[int, ...]  # shot numbers whose takes are in the film
    skipped_shots: tuple[int, ...]
    placeholder_shots: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "method": self.method,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "audio": self.audio,
            "shots": list(self.shots),
            "skipped_shots": list(self.skipped_shots),
            "placeholder_shots": list(self.placeholder_shots),
        }


def write_film(edit: Edit, out_path: Path | str, progress: Progress | None = None) -> FilmResult:
    """Write a planned edit as an MP4 (H.264 yuv420p, AAC where there is music)."""
    out = check_output_path(out_path, FILM_SUFFIXES, "out")
    copyable = stream_copy_clips(edit)
    try:
        with replacing(out, "out") as temp:
            if copyable is not None:
                method = "stream copy"
                frames = sum(clip.frame_count for clip in copyable)
                if progress is not None:
                    progress("copy", 0, len(copyable))
                editing.join_copy([item.path for item in edit.takes], temp)  # type: ignore[misc]
                if progress is not None:
                    progress("copy", len(copyable), len(copyable))
            else:
                method = "encode"
                frames = _encode(edit, temp, progress)
    except VideoError as exc:
        raise StudioError(f"could not write the film {out.name}: {exc}") from exc
    log.info("wrote %s (%s, %d frames)", out, method, frames)
    return FilmResult(
        path=out,
        method=method,
        frames=frames,
        seconds=frames / edit.fps,
        width=edit.width,
        height=edit.height,
        fps=edit.fps,
        audio=edit.audio is not None,
        shots=tuple(item.shot_number for item in edit.takes if item.shot_number is not None),
        skipped_shots=edit.skipped_shots,
        placeholder_shots=edit.placeholder_shots,
    )


def stream_copy_clips(edit: Edit) -> list[mp4.Mp4Video] | None:
    """The takes' video tracks when the film can be joined by stream copy; None when it must be encoded.

    Only plain cuts of whole takes qualify, each an H.264 4:2:0 8-bit MP4 at the film's size and rate, all with
    the same codec configuration (a joined MP4 carries one).
    """
    if edit.crossfaded or edit.audio is not None or any(item.kind != "take" or item.trimmed for item in edit.items):
        return None
    clips = []
    for item in edit.items:
        try:
            clip = mp4.read_mp4_video(item.path)  # type: ignore[arg-type]
        except VideoError as exc:
            log.info("encoding the film: %s", exc)
            return None
        if not clip.is_h264_yuv420p or (clip.width, clip.height) != (edit.width, edit.height) or clip.fps != edit.fps:
            return None
        if clips and not clip.joinable_with(clips[0]):
            return None
        clips.append(clip)
    return clips


def _encode(edit: Edit, out: Path, progress: Progress | None) -> int:
    segments: list[editing.Segment] = []
    black = editing.black_yuv420p(edit.width, edit.height)
    for item in edit.items:
        if item.kind == "take":
            assert item.path is not None
            start = item.source_start / item.take_fps
            segments.append(editing.ClipSource(item.path, item.frames, start))
        elif item.kind == "title":
            card = title_card_picture(item.text, edit.width, edit.height, item.background, item.color)
            segments.append(editing.StillSource(editing.rgb_to_yuv420p(np.asarray(card)), item.frames))
        else:
            segments.append(editing.StillSource(black, item.frames))
    audio = None
    if edit.audio is not None:
        audio = editing.AudioTrack(edit.audio, edit.seconds, min(edit.audio_fade, edit.seconds))
    report = (lambda done, total: progress("encode", done, total)) if progress is not None else None
    return editing.render_film(
        segments,
        out,
        width=edit.width,
        height=edit.height,
        fps=edit.fps,
        crossfade_frames=edit.joins,
        audio=audio,
        crf=edit.crf,
        progress=report,
    )
