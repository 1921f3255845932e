"""What a media file holds: its first video stream (size, frame rate, exact frame count) or its first audio stream.

ffprobe answers where it is at hand; with only imageio-ffmpeg's bundled ffmpeg (no ffprobe), the stream
description ``ffmpeg -i`` prints is read instead, and video packets are counted by copying them to nowhere.
A still image (PNG, JPEG: ffmpeg's ``image2`` or ``*_pipe`` formats) is not a video.

Every file is opened through :func:`pipelines.ffmpeg.file_input`: read as one local file, by a video demuxer
(:data:`~pipelines.ffmpeg.VIDEO_DEMUXERS`) or an audio one (:data:`~pipelines.ffmpeg.AUDIO_DEMUXERS`), never
as a playlist of other files. What a file was read as is kept (``demuxer``), so that decoding it later forces
the same format.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipelines.ffmpeg import (
    AUDIO_DEMUXERS,
    LIST_DEMUXERS,
    VIDEO_DEMUXERS,
    VideoError,
    file_input,
    find_tools,
    last_lines,
    refused_demuxer,
)

AUDIO_EXTENSIONS_HINT = "WAV, MP3, AAC/M4A, FLAC or Ogg"


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as its container and stream report it."""

    width: int
    height: int
    fps: float
    num_frames: int
    duration: float  # seconds
    codec: str
    pix_fmt: str
    demuxer: str = field(default="", compare=False)  # what ffmpeg read the file as: "mov", "matroska", ...


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    seconds: float
    sample_rate: int
    channels: int
    demuxer: str = ""  # what ffmpeg read the file as: "wav", "mp3", "mov", ...


# Command builders.


def probe_command(
    ffprobe: str, path: Path | str, *, count_frames: bool = False, demuxer: str | None = None
) -> list[str]:
    """ffprobe arguments for the first video stream's facts as JSON (``count_frames`` decodes to count), reading
    ``path`` only as a video file (as ``demuxer`` where it is known)."""
    entries = "stream=codec_name,pix_fmt,width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_frames,duration"
    return [
        ffprobe,
        "-v",
        "error",
        "-select_streams",
        "v:0",
        *(["-count_frames"] if count_frames else []),
        "-show_entries",
        f"{entries}:stream_disposition=attached_pic:format=duration,format_name",
        "-of",
        "json",
        *file_input(path, VIDEO_DEMUXERS, demuxer=demuxer),
    ]


def fallback_probe_command(ffmpeg: str, path: Path | str) -> list[str]:
    """ffmpeg arguments that describe ``path`` on stderr and count its video packets on stdout (no ffprobe)."""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        *file_input(path, VIDEO_DEMUXERS),
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-f",
        "null",
        "-progress",
        "pipe:1",
        "-nostats",
        "-",
    ]


def audio_probe_command(ffprobe: str, path: Path | str) -> list[str]:
    """ffprobe arguments for the first audio stream's codec, rate, channels and duration, as JSON."""
    return [
        ffprobe,
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=codec_name,sample_rate,channels,duration:format=duration,format_name",
        "-of",
        "json",
        *file_input(path, AUDIO_DEMUXERS),
    ]


def fallback_audio_probe_command(ffmpeg: str, path: Path | str) -> list[str]:
    """ffmpeg arguments that describe ``path``, read only as an audio file, on stderr (no ffprobe)."""
    return [ffmpeg, "-hide_banner", "-nostdin", *file_input(path, AUDIO_DEMUXERS)]


# Video.


def probe(path: Path | str) -> VideoInfo:
    """Size, frame rate, exact frame count, duration, codec and pixel format of ``path``'s first video stream."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path} is not a file")
    tools = find_tools()
    if tools.ffprobe is None:
        return _probe_with_ffmpeg(tools.ffmpeg, path)
    data = _ffprobe(tools.ffprobe, path, count_frames=False)
    stream = data["stream"]
    frames = _int(stream.get("nb_frames"))
    if not frames:  # containers without a frame index (Matroska, WebM): decode and count
        stream = _ffprobe(tools.ffprobe, path, count_frames=True, demuxer=data["demuxer"])["stream"]
        frames = _int(stream.get("nb_read_frames"))
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    duration = _float(stream.get("duration")) or _float(data["format"].get("duration"))
    if not duration and fps and frames:
        duration = frames / fps
    return VideoInfo(
        width=int(stream["width"]),
        height=int(stream["height"]),
        fps=fps,
        num_frames=frames,
        duration=duration,
        codec=str(stream.get("codec_name", "")),
        pix_fmt=str(stream.get("pix_fmt", "")),
        demuxer=data["demuxer"],
    )


def _ffprobe(ffprobe: str, path: Path, *, count_frames: bool, demuxer: str | None = None) -> dict[str, Any]:
    command = probe_command(ffprobe, path, count_frames=count_frames, demuxer=demuxer)
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"could not run ffprobe ({ffprobe}): {exc}") from exc
    if done.returncode != 0:
        raise not_readable(path, done.stderr, "a video")
    data = json.loads(done.stdout or b"{}")
    streams = [s for s in data.get("streams", []) if not s.get("disposition", {}).get("attached_pic")]
    form = data.get("format", {})
    if not streams:
        raise VideoError(f"{path.name} has no video stream")
    if _is_still(str(form.get("format_name", ""))):
        raise VideoError(f"{path.name} is a still image ({form.get('format_name')}), not a video")
    return {"stream": streams[0], "format": form, "demuxer": _first_name(form.get("format_name"))}


def not_readable(path: Path, stderr: bytes, wanted: str) -> VideoError:
    """The error for a file ffmpeg would not open as ``wanted`` ("a video", "an audio file"), in the user's words:
    a playlist, a still image, another kind of file, or what ffmpeg itself said."""
    demuxer = refused_demuxer(stderr)
    if demuxer in LIST_DEMUXERS:
        return VideoError(
            f"{path.name} is a playlist naming other files ({demuxer}), not {wanted}: only the file itself is read, "
            "never the files it names"
        )
    if demuxer is not None and _is_still(demuxer):
        return VideoError(f"{path.name} is a still image ({demuxer}), not {wanted}")
    if demuxer is not None:
        kinds = "MP4, MOV, Matroska/WebM, AVI or MPEG-TS" if wanted == "a video" else AUDIO_EXTENSIONS_HINT
        return VideoError(f"{path.name} is {demuxer} data, not {wanted} ({kinds})")
    return VideoError(f"{path.name} is not {wanted} ffmpeg can read: {last_lines(stderr)}")


_STREAM = re.compile(r"Stream #\d+:\d+\S*: Video: (?P<spec>.*)")
_AUDIO_STREAM = re.compile(
    r"Stream #\d+:\d+\S*: Audio: (?P<codec>[^ ,]+)[^\n]*?(?P<rate>\d+) Hz(?:, (?P<layout>[^,]+))?"
)
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_INPUT = re.compile(r"Input #0, (?P<format>[^ ]+), from")


def _probe_with_ffmpeg(ffmpeg: str, path: Path) -> VideoInfo:
    """Without ffprobe: read the stream description ffmpeg prints, and count packets by copying to nowhere."""
    command = fallback_probe_command(ffmpeg, path)
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"could not run ffmpeg ({ffmpeg}): {exc}") from exc
    log = done.stderr.decode("utf-8", "replace")
    stream = _STREAM.search(log)
    if done.returncode != 0 or stream is None:
        raise not_readable(path, done.stderr, "a video")
    form = _INPUT.search(log)
    if form and _is_still(form["format"].rstrip(",")):
        raise VideoError(f"{path.name} is a still image, not a video")
    parts = _top_level_parts(stream["spec"])
    codec = parts[0].split()[0]
    pix_fmt = parts[1].split("(")[0].strip() if len(parts) > 1 else ""
    size = next((re.match(r"(\d+)x(\d+)", part) for part in parts[1:] if re.match(r"\d+x\d+", part)), None)
    if size is None:
        raise VideoError(f"{path.name}: ffmpeg did not report the video's size")
    rate = re.search(r"([\d.]+)(k?) fps", stream["spec"]) or re.search(r"([\d.]+)(k?) tbr", stream["spec"])
    fps = float(rate[1]) * (1000 if rate[2] else 1) if rate else 0.0
    counted = re.findall(r"^frame=(\d+)", done.stdout.decode("ascii", "replace"), flags=re.MULTILINE)
    frames = int(counted[-1]) if counted else 0
    duration = _duration(log)
    if duration is None:
        duration = frames / fps if fps else 0.0
    return VideoInfo(
        width=int(size[1]),
        height=int(size[2]),
        fps=fps,
        num_frames=frames,
        duration=duration,
        codec=codec,
        pix_fmt=pix_fmt,
        demuxer=_first_name(form["format"]) if form else "",
    )


def _top_level_parts(spec: str) -> list[str]:
    """Split ffmpeg's stream description at commas that are not inside parentheses or brackets."""
    parts, depth, current = [], 0, []
    for char in spec:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _is_still(format_name: str) -> bool:
    return any(name == "image2" or name.endswith("_pipe") for name in format_name.split(","))


def _first_name(format_name: Any) -> str:
    """The name ``-f`` takes for a demuxer ffmpeg reports by all its names (``mov,mp4,m4a,...``: ``mov``)."""
    return str(format_name or "").rstrip(",").split(",")[0]


# Audio.


def probe_audio(path: Path | str) -> AudioInfo:
    """The first audio stream of ``path``; :class:`VideoError` for a file with no sound ffmpeg can read."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path} is not a file")
    tools = find_tools()
    if tools.ffprobe is None:
        return _probe_audio_with_ffmpeg(tools.ffmpeg, path)
    try:
        done = subprocess.run(audio_probe_command(tools.ffprobe, path), capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"could not run ffprobe ({tools.ffprobe}): {exc}") from exc
    if done.returncode != 0:
        raise not_readable(path, done.stderr, "an audio file")
    data = json.loads(done.stdout or b"{}")
    streams = data.get("streams") or []
    if not streams:
        raise VideoError(f"{path.name} has no audio stream")
    stream, form = streams[0], data.get("format", {})
    seconds = _float(stream.get("duration")) or _float(form.get("duration"))
    return AudioInfo(
        codec=str(stream.get("codec_name", "")),
        seconds=seconds,
        sample_rate=int(_float(stream.get("sample_rate"))),
        channels=int(_float(stream.get("channels"))),
        demuxer=_first_name(form.get("format_name")),
    )


def _probe_audio_with_ffmpeg(ffmpeg: str, path: Path) -> AudioInfo:
    try:
        done = subprocess.run(fallback_audio_probe_command(ffmpeg, path), capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"could not run ffmpeg ({ffmpeg}): {exc}") from exc
    log = done.stderr.decode("utf-8", "replace")
    stream = _AUDIO_STREAM.search(log)
    if stream is None:
        if refused_demuxer(done.stderr) is not None:
            raise not_readable(path, done.stderr, "an audio file")
        raise VideoError(f"{path.name} has no audio stream ffmpeg can read")
    layout = stream["layout"] or ""
    channels = {"mono": 1, "stereo": 2}.get(layout.strip(), 0)
    form = _INPUT.search(log)
    demuxer = _first_name(form["format"]) if form else ""
    return AudioInfo(stream["codec"], _duration(log) or 0.0, int(stream["rate"]), channels, demuxer)


# Numbers as ffmpeg writes them.


def _duration(log: str) -> float | None:
    """The ``Duration: HH:MM:SS.ss`` ffmpeg prints for its input, in seconds; None where it prints none."""
    found = _DURATION.search(log)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _rate(text: Any) -> float:
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value)


def _int(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0
