"""Joining clips into one film through ffmpeg: stream copy where the clips allow it, else one encode fed frames.

Two ways to a film, chosen by the caller:

- :func:`join_copy`: ffmpeg's concat demuxer with ``-c copy``. No pixel is decoded, so it is as fast as copying
  the files, but only correct when every clip carries the same codec configuration (the output has one
  ``avcC``): :func:`read_mp4_video` reads that from the files' own boxes, without starting a process, and
  :meth:`Mp4Video.joinable_with` compares it.
- :func:`render_film`: clips are decoded in batches (one ffmpeg process for up to :data:`DECODE_BATCH` clips,
  each conformed to the film's size and frame rate, trimmed and padded to an exact frame count, and concatenated
  by ffmpeg's ``concat`` filter), title cards and placeholders are still frames, crossfades are blended here in
  YUV 4:2:0, and one ffmpeg process encodes the stream (H.264, yuv420p, BT.709) with the music track if any.
  Even and odd segments are decoded in two lanes, so a crossfade reads both sides as they come: memory holds a
  few frames whatever the film's or the crossfade's length. A process starts per batch rather than per clip,
  since starting ffmpeg costs about a tenth of a second.

Command builders return plain argument lists, so they are tested without encoding anything. ffmpeg writes the
path it is given; callers pass a temporary name beside the target and rename it into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

from pipelines.video import (
    SCALE_FLAGS,
    VideoError,
    _last_lines,
    _read_into,
    _start,
    _stop,
    _tail,
    ffmpeg_quiet,
    find_tools,
    h264_output_arguments,
    raw_input_arguments,
)

logger = logging.getLogger(__name__)

DECODE_BATCH = 8  # clips per decoding process: fewer process starts, and a bounded number of open files
AUDIO_BITRATE = "192k"
AUDIO_EXTENSIONS_HINT = "WAV, MP3, AAC/M4A, FLAC or Ogg"

# H.264 profiles whose sequence parameter set spells out chroma format and bit depth (ITU-T H.264, 7.3.2.1.1).
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


# Reading an MP4's video track from its boxes.


@dataclass(frozen=True)
class Mp4Video:
    """What an MP4's first video track says about itself: enough to know whether clips join by stream copy."""

    codec: str  # the sample entry's four-character code: avc1, hvc1, mp4v, ...
    width: int
    height: int
    timescale: int
    frame_count: int
    frame_delta: int | None  # ticks per frame; None when frames do not all last the same
    config: bytes  # the sample entry's codec configuration boxes (avcC, colr, pasp, ...), bitrate box left out
    chroma_format: int | None  # 1 = 4:2:0; None where the codec configuration was not read
    bit_depth: int | None

    @property
    def fps(self) -> Fraction | None:
        return Fraction(self.timescale, self.frame_delta) if self.frame_delta else None

    @property
    def is_h264_yuv420p(self) -> bool:
        return self.codec in ("avc1", "avc3") and self.chroma_format == 1 and self.bit_depth == 8

    def joinable_with(self, other: Mp4Video) -> bool:
        """True when both can go into one MP4 by stream copy: same codec configuration, size and frame rate."""
        return (
            self.codec == other.codec
            and (self.width, self.height) == (other.width, other.height)
            and self.config == other.config
            and self.fps is not None
            and self.fps == other.fps
        )


def read_mp4_video(path: Path | str) -> Mp4Video:
    """The first video track of an MP4/MOV file, read from its ``moov`` box (no process, no decoding).

    Raises :class:`VideoError` for a file that is not an MP4 with a video track.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            moov = _find_top_level(f, b"moov")
    except OSError as exc:
        raise VideoError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if moov is None:
        raise VideoError(f"{path.name} is not an MP4 file (it has no 'moov' box)")
    try:
        for trak in _children(moov, b"trak"):
            mdia = _child(trak, b"mdia")
            if mdia is None or _handler(mdia) != b"vide":
                continue
            return _video_track(mdia)
    except (struct.error, IndexError, ValueError) as exc:
        raise VideoError(f"{path.name} has a damaged MP4 header: {exc}") from exc
    raise VideoError(f"{path.name} has no video track")


def _find_top_level(f: BinaryIO, wanted: bytes) -> bytes | None:
    """The payload of the first top-level box of type ``wanted``, seeking past the others (``mdat`` is large)."""
    f.seek(0, 2)
    end = f.tell()
    offset = 0
    while offset + 8 <= end:
        f.seek(offset)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", f.read(8))
            header = 16
        elif size == 0:
            size = end - offset
        if size < header:
            return None
        if kind == wanted:
            return f.read(size - header)
        offset += size
    return None


def _boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise ValueError(f"box {kind!r} runs past its parent")
        yield kind, data[offset + header : offset + size]
        offset += size


def _children(data: bytes, kind: bytes) -> Iterator[bytes]:
    return (payload for box, payload in _boxes(data) if box == kind)


def _child(data: bytes, kind: bytes) -> bytes | None:
    return next(_children(data, kind), None)


def _handler(mdia: bytes) -> bytes | None:
    hdlr = _child(mdia, b"hdlr")
    return hdlr[8:12] if hdlr is not None and len(hdlr) >= 12 else None


def _video_track(mdia: bytes) -> Mp4Video:
    mdhd = _child(mdia, b"mdhd")
    stbl = _path(mdia, b"minf", b"stbl")
    if mdhd is None or stbl is None:
        raise ValueError("the video track has no media header or sample table")
    timescale = struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0]
    stsd = _child(stbl, b"stsd")
    if stsd is None:
        raise ValueError("the video track has no sample description")
    codec, entry = next(_boxes(stsd[8:]))  # version/flags and entry count, then the first sample entry
    width, height = struct.unpack_from(">HH", entry, 24)
    children = list(_boxes(entry[78:]))  # after the fixed VisualSampleEntry fields
    config = b"".join(struct.pack(">I4s", len(p) + 8, k) + p for k, p in children if k != b"btrt")
    chroma_format, bit_depth = None, None
    avcc = next((p for k, p in children if k == b"avcC"), None)
    if avcc is not None:
        chroma_format, bit_depth = _avcc_format(avcc)
    deltas = _stts(_child(stbl, b"stts") or b"")
    frame_count = sum(count for count, _ in deltas)
    distinct = {delta for count, delta in deltas if count}
    return Mp4Video(
        codec=codec.decode("latin-1"),
        width=width,
        height=height,
        timescale=timescale,
        frame_count=frame_count,
        frame_delta=distinct.pop() if len(distinct) == 1 else None,
        config=config,
        chroma_format=chroma_format,
        bit_depth=bit_depth,
    )


def _path(data: bytes, *kinds: bytes) -> bytes | None:
    for kind in kinds:
        found = _child(data, kind)
        if found is None:
            return None
        data = found
    return data


def _stts(stts: bytes) -> list[tuple[int, int]]:
    if len(stts) < 8:
        return []
    (count,) = struct.unpack_from(">I", stts, 4)
    return [struct.unpack_from(">II", stts, 8 + 8 * i) for i in range(count)]


def _avcc_format(avcc: bytes) -> tuple[int | None, int | None]:
    """Chroma format and luma bit depth from the first sequence parameter set in an ``avcC`` box."""
    if len(avcc) < 8 or avcc[5] & 0x1F == 0:
        return None, None
    (length,) = struct.unpack_from(">H", avcc, 6)
    sps = _unescape(avcc[8 + 1 : 8 + length])  # skip the NAL header byte
    bits = _Bits(sps)
    profile = bits.u(8)
    bits.u(16)  # constraint flags and level
    bits.ue()  # seq_parameter_set_id
    if profile not in _HIGH_PROFILES:
        return 1, 8  # Baseline, Main and Extended are 8-bit 4:2:0 by definition
    chroma_format = bits.ue()
    if chroma_format == 3:
        bits.u(1)  # separate_colour_plane_flag
    return chroma_format, bits.ue() + 8


def _unescape(nal: bytes) -> bytes:
    """Remove H.264 emulation-prevention bytes (00 00 03 -> 00 00)."""
    return re.sub(rb"\x00\x00\x03", b"\x00\x00", nal)


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("the sequence parameter set ends early")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("a malformed Exp-Golomb code in the sequence parameter set")
        return (1 << zeros) - 1 + self.u(zeros)


# Command builders.


def concat_list(paths: Sequence[Path | str]) -> str:
    """A concat demuxer script naming ``paths`` (absolute; quotes escaped as the demuxer reads them)."""
    lines = ["ffconcat version 1.0"]
    for path in paths:
        quoted = str(Path(path).resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def concat_copy_command(ffmpeg: str, list_path: Path | str, out_path: Path | str) -> list[str]:
    """ffmpeg arguments that join the files a concat script names into one MP4 by stream copy (no re-encoding)."""
    return ffmpeg_quiet(
        ffmpeg,
        "-y",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        str(list_path),
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-fflags",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(out_path),
    )


@dataclass(frozen=True)
class ClipSource:
    """A stretch of a video file in the film: from ``start`` seconds, ``frames`` frames at the film's rate.

    The clip is conformed to the film (scaled to fit, centred on black, resampled to the film's frame rate);
    a clip that runs out early holds its last frame to the count.
    """

    path: Path
    frames: int
    start: float = 0.0


@dataclass(frozen=True)
class StillSource:
    """One frame held for ``frames`` frames: a title card or a black placeholder (YUV 4:2:0, planar, flat)."""

    frame: np.ndarray
    frames: int


Segment = ClipSource | StillSource


@dataclass(frozen=True)
class AudioTrack:
    """A music track under the whole film: looped if shorter, cut if longer, faded out over the last seconds."""

    path: Path
    seconds: float  # the film's length
    fade_out: float = 2.0


def decode_batch_command(ffmpeg: str, clips: Sequence[ClipSource], width: int, height: int, fps: int) -> list[str]:
    """ffmpeg arguments that decode ``clips`` one after another as raw YUV 4:2:0 frames of the film on stdout.

    Each clip is conformed (fitted inside ``width`` x ``height`` on black, ``fps`` frames a second), held on its
    last frame if it is short, cut to exactly its frame count, and the clips are joined by the ``concat`` filter,
    so the caller knows where every clip starts in the stream. One decoding thread per clip keeps memory small.
    """
    if not clips:
        raise ValueError("a decoding batch needs at least one clip")
    arguments = ffmpeg_quiet(ffmpeg)
    chains = []
    for index, clip in enumerate(clips):
        if clip.frames < 1:
            raise ValueError(f"a clip needs at least one frame, got {clip.frames}")
        seek = ["-ss", f"{clip.start:.6f}"] if clip.start > 0 else []
        arguments += ["-threads", "1", *seek, "-i", str(clip.path)]
        chains.append(
            f"[{index}:v:0]fps={fps},"
            f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2:"
            f"out_color_matrix=bt709:out_range=tv:flags={SCALE_FLAGS},"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,"
            f"tpad=stop_mode=clone:stop={clip.frames},trim=end_frame={clip.frames},setpts=PTS-STARTPTS[c{index}]"
        )
    joined = "".join(f"[c{index}]" for index in range(len(clips)))
    graph = ";".join([*chains, f"{joined}concat=n={len(clips)}:v=1:a=0[film]"])
    return [
        *arguments,
        "-filter_complex",
        graph,
        "-map",
        "[film]",
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "pipe:1",
    ]


def film_encode_command(
    ffmpeg: str,
    width: int,
    height: int,
    fps: int,
    out_path: Path | str,
    *,
    audio: AudioTrack | None = None,
    crf: int = 18,
) -> list[str]:
    """ffmpeg arguments that read raw YUV 4:2:0 frames on stdin and write the film: H.264, and AAC with audio.

    The music track is looped (``-stream_loop -1``) and cut to the film's length, then faded out.
    """
    arguments = [
        *raw_input_arguments(ffmpeg, "yuv420p", width, height, fps),
        "-color_range",
        "tv",
        "-colorspace",
        "bt709",
        "-i",
        "pipe:0",
    ]
    if audio is not None:
        arguments += ["-stream_loop", "-1", "-i", str(audio.path)]
    arguments += ["-map", "0:v:0"]
    if audio is not None:
        fade = max(0.0, min(audio.fade_out, audio.seconds))
        chain = f"atrim=end={audio.seconds:.6f},asetpts=PTS-STARTPTS"
        if fade > 0:
            chain += f",afade=t=out:st={audio.seconds - fade:.6f}:d={fade:.6f}"
        arguments += ["-map", "1:a:0", "-af", chain, "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    else:
        arguments += ["-an"]
    return [*arguments, *h264_output_arguments(crf, out_path)]


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
        str(path),
    ]


# Audio.


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    seconds: float
    sample_rate: int
    channels: int


_AUDIO_STREAM = re.compile(
    r"Stream #\d+:\d+\S*: Audio: (?P<codec>[^ ,]+)[^\n]*?(?P<rate>\d+) Hz(?:, (?P<layout>[^,]+))?"
)
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


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
        raise VideoError(f"{path.name} is not a file ffmpeg can read: {_last_lines(done.stderr)}")
    data = json.loads(done.stdout or b"{}")
    streams = data.get("streams") or []
    if not streams:
        raise VideoError(f"{path.name} has no audio stream")
    stream, form = streams[0], data.get("format", {})
    seconds = _number(stream.get("duration")) or _number(form.get("duration"))
    return AudioInfo(
        codec=str(stream.get("codec_name", "")),
        seconds=seconds,
        sample_rate=int(_number(stream.get("sample_rate"))),
        channels=int(_number(stream.get("channels"))),
    )


def _probe_audio_with_ffmpeg(ffmpeg: str, path: Path) -> AudioInfo:
    try:
        done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"could not run ffmpeg ({ffmpeg}): {exc}") from exc
    log = done.stderr.decode("utf-8", "replace")
    stream = _AUDIO_STREAM.search(log)
    if stream is None:
        raise VideoError(f"{path.name} has no audio stream ffmpeg can read")
    duration = _DURATION.search(log)
    seconds = 0.0
    if duration:
        hours, minutes, secs = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    layout = stream["layout"] or ""
    channels = {"mono": 1, "stereo": 2}.get(layout.strip(), 0)
    return AudioInfo(stream["codec"], seconds, int(stream["rate"]), channels)


def _number(text: object) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


# Pictures.


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """``uint8`` RGB ``(H, W, 3)`` as one planar YUV 4:2:0 frame (Y, then U, then V; flat), BT.709 limited range.

    The same matrix and range the films are tagged with, so a title card looks as drawn.
    """
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) picture, got {array.dtype} {array.shape}")
    height, width, _ = array.shape
    if width % 2 or height % 2:
        raise ValueError(f"YUV 4:2:0 needs even sizes, got {width}x{height}")
    r, g, b = (array[..., i].astype(np.float32) for i in range(3))
    luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
    y = 16.0 + luma * (219.0 / 255.0)
    u = 128.0 + (b - luma) / 1.8556 * (224.0 / 255.0)
    v = 128.0 + (r - luma) / 1.5748 * (224.0 / 255.0)

    def quarter(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = [y, quarter(u), quarter(v)]
    return np.concatenate([np.clip(np.rint(p), 0, 255).astype(np.uint8).ravel() for p in planes])


def black_yuv420p(width: int, height: int) -> np.ndarray:
    """A black frame (Y=16, U=V=128: video black in limited range)."""
    luma = np.full(width * height, 16, dtype=np.uint8)
    chroma = np.full(width * height // 2, 128, dtype=np.uint8)
    return np.concatenate([luma, chroma])


# Writing films.


def join_copy(paths: Sequence[Path], out_path: Path) -> None:
    """Join MP4 files (already known to be joinable) into ``out_path`` by stream copy; nothing is re-encoded."""
    if not paths:
        raise ValueError("nothing to join")
    out_path = Path(out_path)
    ffmpeg = find_tools().ffmpeg
    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", encoding="utf-8", delete=False) as script:
        script.write(concat_list(paths))
    try:
        done = subprocess.run(concat_copy_command(ffmpeg, script.name, out_path), capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"could not run ffmpeg ({ffmpeg}): {exc}") from exc
    finally:
        Path(script.name).unlink(missing_ok=True)
    if done.returncode != 0:
        out_path.unlink(missing_ok=True)
        raise VideoError(f"ffmpeg could not join the clips: {_last_lines(done.stderr)}")


def film_frame_count(segments: Sequence[Segment], crossfade_frames: int) -> int:
    """Frames in the film: every segment's frames, less one crossfade per join."""
    return sum(s.frames for s in segments) - crossfade_frames * max(0, len(segments) - 1)


def render_film(
    segments: Sequence[Segment],
    out_path: Path,
    *,
    width: int,
    height: int,
    fps: int,
    crossfade_frames: int = 0,
    audio: AudioTrack | None = None,
    crf: int = 18,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Encode ``segments`` one after another into ``out_path``, crossfading each join; returns the frame count.

    ``progress(done, total)`` is called as frames are encoded; if it raises, encoding stops, the partial file is
    removed and the exception goes on to the caller. Any failure leaves no file at ``out_path``.
    """
    if not segments:
        raise ValueError("a film needs at least one segment")
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
    for index, segment in enumerate(segments):
        joins = (index > 0) + (index < len(segments) - 1)
        if segment.frames < max(1, joins * crossfade_frames):
            raise ValueError(f"segment {index + 1} has {segment.frames} frames, too few for its crossfades")
    out_path = Path(out_path)
    total = film_frame_count(segments, crossfade_frames)
    ffmpeg = find_tools().ffmpeg
    command = film_encode_command(ffmpeg, width, height, fps, out_path, audio=audio, crf=crf)
    every = max(1, fps // 2)
    done = 0
    written = False
    try:
        with tempfile.TemporaryFile() as stderr, _Frames(segments, ffmpeg, width, height, fps) as frames:
            encoder = _start(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
            assert encoder.stdin is not None
            try:
                for frame in _crossfaded(frames, segments, crossfade_frames):
                    try:
                        encoder.stdin.write(memoryview(frame))
                    except BrokenPipeError:
                        break  # the encoder stopped: its status and stderr say why
                    done += 1
                    if progress is not None and (done % every == 0 or done == total):
                        progress(done, total)
                with contextlib.suppress(BrokenPipeError):
                    encoder.stdin.close()
                returncode = encoder.wait()
            finally:
                _stop(encoder)
            if returncode != 0:
                raise VideoError(f"ffmpeg could not write {out_path.name}: {_tail(stderr)}")
            if done != total:
                raise VideoError(f"the encoder took {done} of {total} frames")
        written = True
        return total
    finally:
        if not written:
            out_path.unlink(missing_ok=True)


def _crossfaded(frames: _Frames, segments: Sequence[Segment], crossfade: int) -> Iterator[np.ndarray]:
    """The film's frames: each segment in turn, its last ``crossfade`` frames blended with the next one's first.

    Neighbouring segments come from different lanes (even and odd), so a blend reads both as they are decoded and
    nothing is held back.
    """
    weights = [round(256 * (j + 1) / (crossfade + 1)) for j in range(crossfade)]
    for index, segment in enumerate(segments):
        head = crossfade if index > 0 else 0  # already blended into the join before
        tail = crossfade if index < len(segments) - 1 else 0
        for _ in range(segment.frames - head - tail):
            yield frames.next(index)
        for weight in weights[:tail]:
            a = frames.next(index).astype(np.uint16)
            b = frames.next(index + 1).astype(np.uint16)
            yield ((a * (256 - weight) + b * weight + 128) >> 8).astype(np.uint8)


class _Frames:
    """The segments' frames, from two lanes: even-numbered segments in one, odd-numbered in the other."""

    def __init__(self, segments: Sequence[Segment], ffmpeg: str, width: int, height: int, fps: int) -> None:
        self.lanes = [
            _Lane([s for i, s in enumerate(segments) if i % 2 == parity], ffmpeg, width, height, fps)
            for parity in (0, 1)
        ]

    def __enter__(self) -> _Frames:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        for lane in self.lanes:
            lane.close(finished=kind is None)

    def next(self, index: int) -> np.ndarray:
        """The next frame of segment ``index`` (segments are read in order within each lane)."""
        return self.lanes[index % 2].next()


class _Lane:
    """A lane's segments in order: clips from batched decoding processes, stills repeated.

    The next batch's process is started while the current one is read, so its start-up overlaps the work.
    """

    def __init__(self, segments: Sequence[Segment], ffmpeg: str, width: int, height: int, fps: int) -> None:
        self.ffmpeg, self.width, self.height, self.fps = ffmpeg, width, height, fps
        self.size = width * height * 3 // 2
        self.runs = list(_runs(segments))
        self.run_index = -1
        self.remaining = 0  # frames left in the current run
        self.still: np.ndarray | None = None
        self.current: _Decoder | None = None
        self.upcoming: _Decoder | None = None

    def next(self) -> np.ndarray:
        while self.remaining == 0:
            self._advance()
        self.remaining -= 1
        if self.still is not None:
            return self.still
        assert self.current is not None
        return self.current.read()

    def close(self, *, finished: bool) -> None:
        """Stop the processes; after a complete read, the last one must have ended cleanly."""
        try:
            if finished and self.current is not None and self.remaining == 0:
                self.current.finish()
                self.current = None
        finally:
            for decoder in (self.current, self.upcoming):
                if decoder is not None:
                    decoder.close()

    def _advance(self) -> None:
        if self.current is not None:
            self.current.finish()
            self.current = None
        self.run_index += 1
        if self.run_index >= len(self.runs):
            raise VideoError("the film ran out of frames before its end")
        run = self.runs[self.run_index]
        self.remaining = sum(segment.frames for segment in run)
        if isinstance(run[0], StillSource):
            self.still = run[0].frame
            return
        self.still = None
        self.current = self.upcoming or self._decoder(run)  # type: ignore[arg-type]
        self.upcoming = None
        following = next((r for r in self.runs[self.run_index + 1 :] if isinstance(r[0], ClipSource)), None)
        if following is not None:
            self.upcoming = self._decoder(following)  # type: ignore[arg-type]

    def _decoder(self, clips: Sequence[ClipSource]) -> _Decoder:
        command = decode_batch_command(self.ffmpeg, clips, self.width, self.height, self.fps)
        return _Decoder(command, self.size, ", ".join(Path(c.path).name for c in clips))


def _runs(segments: Sequence[Segment]) -> Iterator[list[Segment]]:
    """Segments grouped for decoding: clips in batches of up to :data:`DECODE_BATCH`, each still on its own."""
    batch: list[Segment] = []
    for segment in segments:
        if isinstance(segment, StillSource):
            if batch:
                yield batch
                batch = []
            yield [segment]
            continue
        batch.append(segment)
        if len(batch) == DECODE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class _Decoder:
    """One decoding process: frames are read from its stdout one at a time."""

    def __init__(self, command: list[str], frame_size: int, names: str) -> None:
        self.frame_size = frame_size
        self.names = names
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.process = _start(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)

    def read(self) -> np.ndarray:
        assert self.process.stdout is not None
        frame = np.empty(self.frame_size, dtype=np.uint8)
        got = _read_into(self.process.stdout, memoryview(frame))
        if got != self.frame_size:
            self.process.wait()
            raise VideoError(f"ffmpeg could not decode {self.names}: {_tail(self.stderr)}")
        return frame

    def finish(self) -> None:
        """Wait for a process whose frames were all read; it must end cleanly, with nothing more to say."""
        assert self.process.stdout is not None
        extra = self.process.stdout.read(1)
        self.process.stdout.close()
        returncode = self.process.wait()
        try:
            if returncode != 0:
                raise VideoError(f"ffmpeg could not decode {self.names}: {_tail(self.stderr)}")
            if extra:
                raise VideoError(f"ffmpeg gave more frames than asked for from {self.names}")
        finally:
            self.stderr.close()

    def close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        _stop(self.process)
        self.stderr.close()
