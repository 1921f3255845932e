"""Running ffmpeg and ffprobe: finding the binaries, starting and stopping their processes, and their errors.

The system's ``ffmpeg``/``ffprobe`` are used when they are on ``PATH``; otherwise the ffmpeg binary that
``imageio-ffmpeg`` bundles (it has no ffprobe, so probing then reads ``ffmpeg -i`` and counts packets, see
:mod:`pipelines.probe`). Every failure is a :class:`VideoError` carrying the last lines ffmpeg wrote.

Command builders here and in the modules that use them return plain argument lists, so that they are tested
without encoding anything.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass
from typing import IO, Any

from pipelines.backend import BackendError

STDERR_LINES = 8  # how much of ffmpeg's complaint goes into a VideoError


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
