"""Frames to H.264 files and back, through ffmpeg: takes, thumbnails, and the last frame a next shot starts on.

Encoding is reproducible to the byte: the same frames give the same file, so a take's file hash can be checked
against a re-render (on the same ffmpeg/x264 build). That takes more than ``-fflags +bitexact``: libx264's output
depends on its thread count (which defaults to the machine's core count), so it is fixed; the RGB to YUV
conversion is pinned to swscale's bit-exact path; and metadata (creation time, library versions) is dropped.
:func:`frames_sha256` is the check that does not depend on the encoder at all.

RGB is converted with the BT.709 matrix in limited range and the file is tagged so, which is what players assume
for video of this kind; decoding reads the tags back, so a round trip keeps colours.

The system's ``ffmpeg``/``ffprobe`` are used when they are on ``PATH``; otherwise the ffmpeg binary that
``imageio-ffmpeg`` bundles (it has no ffprobe, so probing then reads ``ffmpeg -i`` and counts packets).
Command builders return plain argument lists so that they are tested without encoding anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from pipelines.backend import BackendError

logger = logging.getLogger(__name__)

PRESET = "medium"  # part of the output's identity: another preset gives other bytes
THREADS = 8  # libx264's output depends on its thread count; a fixed count keeps files the same on every machine
SCALE_FLAGS = "bicubic+accurate_rnd+full_chroma_int+bitexact"  # swscale's bit-exact path, whatever the CPU
LAST_FRAME_SEEK_SECONDS = 3.0  # last_frame() decodes from the keyframe before this point near the end
STDERR_LINES = 8  # how much of ffmpeg's complaint goes into a VideoError


class VideoError(BackendError):
    """ffmpeg could not write or read a video: not a video file, a missing folder, a broken binary."""


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


def encode_command(ffmpeg: str, width: int, height: int, fps: int, path: Path | str, *, crf: int = 18) -> list[str]:
    """ffmpeg arguments that read ``rgb24`` frames of ``width`` x ``height`` on stdin and write H.264 to ``path``.

    The format is named (``-f mp4``) because callers write to a temporary name before renaming it into place.
    """
    return [
        *raw_input_arguments(ffmpeg, "rgb24", width, height, fps),
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
        "-an",
        "-vf",
        f"scale=out_color_matrix=bt709:out_range=tv:flags={SCALE_FLAGS},format=yuv420p",
        *h264_output_arguments(crf, path),
    ]


def h264_output_arguments(crf: int, path: Path | str) -> list[str]:
    """The studio's H.264 output: yuv420p, BT.709 limited range, a fixed thread count and bit-exact flags, so
    the same frames always make the same file (on the same ffmpeg build); ``+faststart`` for players."""
    return [
        "-c:v",
        "libx264",
        "-preset",
        PRESET,
        "-crf",
        str(crf),
        "-threads",
        str(THREADS),
        "-pix_fmt",
        "yuv420p",
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-color_range",
        "tv",
        "-fps_mode",
        "passthrough",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(path),
    ]


def decode_command(ffmpeg: str, path: Path | str, *, from_end: float | None = None) -> list[str]:
    """ffmpeg arguments that decode the first video stream of ``path`` to ``rgb24`` frames on stdout.

    ``from_end``: start that many seconds before the end (ffmpeg seeks to the keyframe before it and decodes
    forward, so the frames are exactly those a full decode gives). Rotation metadata is not applied, so frames
    have the size :func:`probe` reports.
    """
    seek = ["-sseof", f"-{from_end:g}"] if from_end is not None else []
    return ffmpeg_quiet(
        ffmpeg,
        "-noautorotate",
        *seek,
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-vf",
        f"scale=flags={SCALE_FLAGS},format=rgb24",
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:1",
    )


def probe_command(ffprobe: str, path: Path | str, *, count_frames: bool = False) -> list[str]:
    """ffprobe arguments for the first video stream's facts as JSON (``count_frames`` decodes to count)."""
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
        str(path),
    ]


def fallback_probe_command(ffmpeg: str, path: Path | str) -> list[str]:
    """ffmpeg arguments that describe ``path`` on stderr and count its video packets on stdout (no ffprobe)."""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-i",
        str(path),
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


def write_mp4(frames: np.ndarray, fps: int, path: Path, *, crf: int = 18) -> VideoInfo:
    """Encode ``uint8`` frames ``(T, H, W, 3)`` to H.264 at ``path`` and return what the file holds.

    Frames are streamed to ffmpeg one at a time (a long take is never copied whole). ffmpeg writes ``path``
    itself: callers pass a temporary name and rename it into place. On failure the partial file is removed
    and a :class:`VideoError` carries ffmpeg's last lines.
    """
    frames = _check_frames(frames)
    if fps < 1:
        raise ValueError(f"fps must be at least 1, got {fps}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be between 0 and 51, got {crf}")
    _, height, width, _ = frames.shape
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
    path = Path(path)
    command = encode_command(find_tools().ffmpeg, width, height, fps, path, crf=crf)
    logger.debug("encoding %d frames to %s", frames.shape[0], path)
    written = False
    try:
        with tempfile.TemporaryFile() as stderr:
            process = _start(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
            assert process.stdin is not None
            try:
                try:
                    for frame in frames:
                        process.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
                except BrokenPipeError:
                    logger.debug("ffmpeg stopped reading frames for %s", path)  # its status and stderr say why
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
                returncode = process.wait()
            finally:
                _stop(process)
            if returncode != 0:
                raise VideoError(f"ffmpeg could not write {path.name}: {_tail(stderr)}")
        info = probe(path)
        written = True
        return info
    finally:
        if not written:
            path.unlink(missing_ok=True)


def frames_sha256(frames: np.ndarray) -> str:
    """A SHA-256 of the pixels and the shape: whether two renders are bit-for-bit the same, whatever the encoder."""
    array = np.asarray(frames)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    for frame in array if array.ndim > 1 else [array]:  # a frame at a time: no copy of a whole take
        digest.update(memoryview(np.ascontiguousarray(frame)).cast("B"))
    return digest.hexdigest()


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
        stream = _ffprobe(tools.ffprobe, path, count_frames=True)["stream"]
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
    )


def read_frames(path: Path | str) -> np.ndarray:
    """Every frame of ``path`` as ``uint8`` ``(T, H, W, 3)`` RGB, filled into one array as it is decoded."""
    info = probe(path)
    frames = np.empty((max(info.num_frames, 1), info.height, info.width, 3), dtype=np.uint8)
    count = 0
    extra: list[np.ndarray] = []  # frames beyond what the container promised (rare, but not to be lost)
    for frame in _decode(decode_command(find_tools().ffmpeg, path), info, Path(path).name):
        if count < frames.shape[0]:
            frames[count] = frame
        else:
            extra.append(frame.copy())
        count += 1
    if extra:
        return np.concatenate([frames, np.stack(extra)])
    if count == 0:
        raise VideoError(f"{Path(path).name} has no frames that decode")
    return frames[:count]


def last_frame(path: Path | str) -> Image.Image:
    """The final frame exactly as decoded, to start the next shot on.

    It decodes only the last few seconds (from the keyframe before them), so it costs the same for a minute-long
    take as for a short one; where the seek gives nothing it decodes the whole file.
    """
    info = probe(path)
    ffmpeg = find_tools().ffmpeg
    for command in (decode_command(ffmpeg, path, from_end=LAST_FRAME_SEEK_SECONDS), decode_command(ffmpeg, path)):
        final: np.ndarray | None = None
        for frame in _decode(command, info, Path(path).name):
            final = frame
        if final is not None:
            return Image.fromarray(final.copy())
        logger.info("seeking near the end of %s gave no frame; decoding it whole", path)
    raise VideoError(f"{Path(path).name} has no frames that decode")


def write_thumbnail(frame: np.ndarray, path: Path, *, max_side: int = 320) -> None:
    """Save ``frame`` (``uint8`` ``(H, W, 3)``) as a PNG no larger than ``max_side`` on its longer side."""
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a thumbnail needs a uint8 (H, W, 3) frame, got {array.dtype} {array.shape}")
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    image = Image.fromarray(array)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    image.save(path, format="PNG")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {array.dtype} {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1 or array.shape[2] < 1:
        raise ValueError(f"frames must not be empty, got {array.shape}")
    return array


def _decode(command: list[str], info: VideoInfo, name: str) -> Iterator[np.ndarray]:
    """Run a decode command and yield its frames; each is a view of one buffer, valid until the next."""
    size = info.width * info.height * 3
    buffer = np.empty((info.height, info.width, 3), dtype=np.uint8)
    view = memoryview(buffer).cast("B")
    with tempfile.TemporaryFile() as stderr:
        process = _start(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        assert process.stdout is not None
        try:
            while True:
                got = _read_into(process.stdout, view)
                if got == 0:
                    break
                if got != size:
                    raise VideoError(f"ffmpeg stopped in the middle of a frame ({got} of {size} bytes)")
                yield buffer
        finally:
            process.stdout.close()
            _stop(process)  # the caller stopped early or something failed: don't leave ffmpeg running
        if process.returncode != 0:
            raise VideoError(f"ffmpeg could not read {name}: {_tail(stderr)}")


def _start(command: list[str], **streams: Any) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(command, **streams)
    except OSError as exc:
        raise VideoError(f"could not run {command[0]}: {exc}") from exc


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Wait for ``process``, killing it first if it is still running (an error or an early stop)."""
    if process.poll() is None:
        process.kill()
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    process.wait()


def _read_into(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; return how many bytes came (less than its size only at the end)."""
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


def _ffprobe(ffprobe: str, path: Path, *, count_frames: bool) -> dict[str, Any]:
    command = probe_command(ffprobe, path, count_frames=count_frames)
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"could not run ffprobe ({ffprobe}): {exc}") from exc
    if done.returncode != 0:
        raise VideoError(f"{path.name} is not a video ffmpeg can read: {_last_lines(done.stderr)}")
    data = json.loads(done.stdout or b"{}")
    streams = [s for s in data.get("streams", []) if not s.get("disposition", {}).get("attached_pic")]
    form = data.get("format", {})
    if not streams:
        raise VideoError(f"{path.name} has no video stream")
    if _is_still(str(form.get("format_name", ""))):
        raise VideoError(f"{path.name} is a still image ({form.get('format_name')}), not a video")
    return {"stream": streams[0], "format": form}


_STREAM = re.compile(r"Stream #\d+:\d+\S*: Video: (?P<spec>.*)")
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
        raise VideoError(f"{path.name} is not a video ffmpeg can read: {_last_lines(done.stderr)}")
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
    duration_match = _DURATION.search(log)
    if duration_match:
        hours, minutes, seconds = duration_match.groups()
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    else:
        duration = frames / fps if fps else 0.0
    return VideoInfo(
        width=int(size[1]),
        height=int(size[2]),
        fps=fps,
        num_frames=frames,
        duration=duration,
        codec=codec,
        pix_fmt=pix_fmt,
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


def _tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    return _last_lines(stderr.read())


def _last_lines(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines[-STDERR_LINES:]) or "no message"
