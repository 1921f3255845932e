"""Running ffmpeg and ffprobe: finding the binaries, starting and stopping their processes, and their errors.

The system's ``ffmpeg``/``ffprobe`` are used when they are on ``PATH``; otherwise the ffmpeg binary that
``imageio-ffmpeg`` bundles (it has no ffprobe, so probing then reads ``ffmpeg -i`` and counts packets, see
:mod:`pipelines.probe`). Every failure is a :class:`VideoError` carrying the last lines ffmpeg wrote.

Every media file is opened through :func:`file_input`: ffmpeg guesses a file's format from its bytes, and some
formats it can guess are lists of other inputs (a concat script, an HLS playlist) that it goes on to read, so a
"music file" that is really a playlist would put the user's other files into the film. An input is read only
through the ``file`` protocol and only by a demuxer of the kind expected (ffmpeg checks the whitelist after
guessing and before reading anything the file names), with its format forced where it is already known.

Command builders here and in the modules that use them return plain argument lists, so that they are tested
without encoding anything.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipelines.backend import BackendError

STDERR_LINES = 8  # how much of ffmpeg's complaint goes into a VideoError

# The demuxers a media input may be read by (ffmpeg's names: "mov" reads MP4, MOV and M4A, "matroska" also WebM).
# None of them opens another file: lists of inputs (concat, hls, dash, imf) and still images are left out.
VIDEO_DEMUXERS = ("mov", "matroska", "avi", "mpegts")
AUDIO_DEMUXERS = ("wav", "w64", "mp3", "aac", "flac", "ogg", "aiff", "mov", "matroska")
# Demuxers that read other files a file names: what a refused input most likely is, in the user's words.
LIST_DEMUXERS = frozenset({"concat", "hls", "dash", "webm_dash_manifest", "imf"})
_REFUSED_DEMUXER = re.compile(r"\[([\w,]+) @ 0x[0-9a-f]+\] Format not on whitelist")


class VideoError(BackendError):
    """ffmpeg could not write or read a video: not a video file, a missing folder, a broken binary."""


@dataclass(frozen=True)
class FFmpegTools:
    """The binaries to run. ``ffprobe`` is None where only imageio-ffmpeg's bundled ffmpeg is at hand."""

    ffmpeg: str
    ffprobe: str | None


def find_tools() -> FFmpegTools:
    """The system ffmpeg and ffprobe when on PATH, else imageio-ffmpeg's ffmpeg (and no ffprobe)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        return FFmpegTools(ffmpeg, shutil.which("ffprobe"))
    try:
        import imageio_ffmpeg

        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise VideoError("ffmpeg was not found: install it (apt install ffmpeg) or imageio-ffmpeg") from exc
    return FFmpegTools(bundled, None)


def ffmpeg_quiet(ffmpeg: str, *arguments: str) -> list[str]:
    """An ffmpeg command that reads nothing from the terminal and prints only errors."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *arguments]


def file_input(path: Path | str, demuxers: tuple[str, ...], *, demuxer: str | None = None) -> list[str]:
    """ffmpeg or ffprobe arguments that open ``path`` as one input: the file itself and nothing else.

    Only the ``file`` protocol, only one of ``demuxers`` (``-format_whitelist``), the format forced with ``-f``
    where the caller knows it (``demuxer``), and the name given as a ``file:`` URL, so that no part of it is
    taken for another protocol.
    """
    forced = ["-f", demuxer] if demuxer else []
    allowed = ",".join(demuxers)
    return ["-protocol_whitelist", "file", "-format_whitelist", allowed, *forced, "-i", file_url(path)]


def file_url(path: Path | str) -> str:
    """``path`` as ffmpeg's ``file:`` URL (absolute): read as a file whatever its name holds."""
    return f"file:{Path(path).absolute()}"


def refused_demuxer(stderr: bytes) -> str | None:
    """The demuxer ffmpeg guessed for an input that the whitelist then refused (first of its names), if any."""
    found = _REFUSED_DEMUXER.search(stderr.decode("utf-8", "replace"))
    return found[1].split(",")[0] if found else None


def raw_input_arguments(ffmpeg: str, pix_fmt: str, width: int, height: int, fps: int) -> list[str]:
    """The start of an ffmpeg command that reads raw ``pix_fmt`` frames of ``width`` x ``height`` on stdin."""
    return ffmpeg_quiet(
        ffmpeg,
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-s",
        f"{width}x{height}",
        "-framerate",
        str(fps),
    )


def start_process(command: list[str], **streams: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` with the given ``stdin``/``stdout``/``stderr``; a binary that cannot run is a VideoError."""
    try:
        return subprocess.Popen(command, **streams)
    except OSError as exc:
        raise VideoError(f"could not run {command[0]}: {exc}") from exc


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Wait for ``process``, killing it first if it is still running (an error or an early stop)."""
    if process.poll() is None:
        process.kill()
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    process.wait()


def read_into(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; return how many bytes came (less than its size only at the end)."""
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


def stderr_tail(stderr: IO[bytes]) -> str:
    """The last lines a process wrote to the file ``stderr``, on one line."""
    stderr.seek(0)
    return last_lines(stderr.read())


def last_lines(data: bytes) -> str:
    """The last :data:`STDERR_LINES` non-empty lines of ``data``, joined on one line."""
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines[-STDERR_LINES:]) or "no message"
