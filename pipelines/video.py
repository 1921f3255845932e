"""A take's frames as an H.264 file and back: writing takes and thumbnails, reading frames, and the last frame.

Encoding is reproducible to the byte: the same frames give the same file, so a take's file hash can be checked
against a re-render (on the same ffmpeg/x264 build). That takes more than ``-fflags +bitexact``: libx264's output
depends on its thread count (which defaults to the machine's core count), so it is fixed; the RGB to YUV
conversion is pinned to swscale's bit-exact path; and metadata (creation time, library versions) is dropped.
:func:`frames_sha256` is the check that does not depend on the encoder at all. The same output settings
(:func:`h264_output_arguments`, :data:`SCALE_FLAGS`) make the films of :mod:`pipelines.edit`.

RGB is converted with the BT.709 matrix in limited range and the file is tagged so, which is what players assume
for video of this kind; decoding reads the tags back, so a round trip keeps colours.

ffmpeg runs through :mod:`pipelines.ffmpeg`; what a written file holds is read by :mod:`pipelines.probe`.
Command builders return plain argument lists so that they are tested without encoding anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pipelines.ffmpeg import (
    VIDEO_DEMUXERS,
    VideoError,
    ffmpeg_quiet,
    file_input,
    find_tools,
    raw_input_arguments,
    read_into,
    start_process,
    stderr_tail,
    stop_process,
)
from pipelines.probe import VideoInfo, probe

if TYPE_CHECKING:
    from pipelines.backend import GenerationResult

logger = logging.getLogger(__name__)

PRESET = "medium"  # part of the output's identity: another preset gives other bytes
THREADS = 8  # libx264's output depends on its thread count; a fixed count keeps files the same on every machine
SCALE_FLAGS = "bicubic+accurate_rnd+full_chroma_int+bitexact"  # swscale's bit-exact path, whatever the CPU
LAST_FRAME_SEEK_SECONDS = 3.0  # last_frame() decodes from the keyframe before this point near the end


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


def decode_command(
    ffmpeg: str, path: Path | str, *, from_end: float | None = None, demuxer: str | None = None
) -> list[str]:
    """ffmpeg arguments that decode the first video stream of ``path`` to ``rgb24`` frames on stdout.

    ``from_end``: start that many seconds before the end (ffmpeg seeks to the keyframe before it and decodes
    forward, so the frames are exactly those a full decode gives). Rotation metadata is not applied, so frames
    have the size :func:`probe` reports. The file is read only as a video, as ``demuxer`` (what :func:`probe`
    read it as) where that is known.
    """
    seek = ["-sseof", f"-{from_end:g}"] if from_end is not None else []
    return ffmpeg_quiet(
        ffmpeg,
        "-noautorotate",
        *seek,
        *file_input(path, VIDEO_DEMUXERS, demuxer=demuxer),
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
            process = start_process(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
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
                stop_process(process)
            if returncode != 0:
                raise VideoError(f"ffmpeg could not write {path.name}: {stderr_tail(stderr)}")
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


def read_frames(path: Path | str) -> np.ndarray:
    """Every frame of ``path`` as ``uint8`` ``(T, H, W, 3)`` RGB, filled into one array as it is decoded."""
    info = probe(path)
    frames = np.empty((max(info.num_frames, 1), info.height, info.width, 3), dtype=np.uint8)
    count = 0
    extra: list[np.ndarray] = []  # frames beyond what the container promised (rare, but not to be lost)
    command = decode_command(find_tools().ffmpeg, path, demuxer=info.demuxer or None)
    for frame in _decode(command, info, Path(path).name):
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
    demuxer = info.demuxer or None
    for command in (
        decode_command(ffmpeg, path, from_end=LAST_FRAME_SEEK_SECONDS, demuxer=demuxer),
        decode_command(ffmpeg, path, demuxer=demuxer),
    ):
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
        process = start_process(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        assert process.stdout is not None
        try:
            while True:
                got = read_into(process.stdout, view)
                if got == 0:
                    break
                if got != size:
                    raise VideoError(f"ffmpeg stopped in the middle of a frame ({got} of {size} bytes)")
                yield buffer
        finally:
            process.stdout.close()
            stop_process(process)  # the caller stopped early or something failed: don't leave ffmpeg running
        if process.returncode != 0:
            raise VideoError(f"ffmpeg could not read {name}: {stderr_tail(stderr)}")


@dataclass(frozen=True)
class EncodedTake:
    """A rendered take as files: its mp4 and thumbnail (in a scratch folder), and what is known of its frames."""

    video: Path
    thumbnail: Path
    info: VideoInfo
    frames_sha256: str
    num_frames: int
    encode_seconds: float


def encode_take(result: GenerationResult, folder: Path) -> EncodedTake:
    """Write ``result``'s frames as ``take.mp4`` and ``thumbnail.png`` in ``folder``."""
    frames = result.frames
    video_path, thumb_path = folder / "take.mp4", folder / "thumbnail.png"
    start = time.perf_counter()
    info = write_mp4(frames, result.fps, video_path)
    write_thumbnail(frames[len(frames) // 2], thumb_path)
    seconds = time.perf_counter() - start
    return EncodedTake(video_path, thumb_path, info, frames_sha256(frames), int(frames.shape[0]), seconds)
