"""The film: segments (clips of takes, still frames) joined into one file through ffmpeg, with a music track.

Two ways to a film, chosen by the caller:

- :func:`join_copy`: ffmpeg's concat demuxer with ``-c copy``. No pixel is decoded, so it is as fast as copying
  the files, but only correct when every clip carries the same codec configuration (the output has one
  ``avcC``): :func:`pipelines.mp4.read_mp4_video` reads that from the files' own boxes, without starting a
  process, and :meth:`pipelines.mp4.Mp4Video.joinable_with` compares it.
- :func:`render_film`: clips are decoded in batches (one ffmpeg process for up to :data:`DECODE_BATCH` clips,
  each conformed to the film's size and frame rate, trimmed and padded to an exact frame count, and concatenated
  by ffmpeg's ``concat`` filter), title cards and placeholders are still frames, crossfades are blended here in
  YUV 4:2:0, and one ffmpeg process encodes the stream (H.264, yuv420p, BT.709, as takes are written by
  :mod:`pipelines.video`) with the music track if any. Even and odd segments are decoded in two lanes, so a
  crossfade reads both sides as they come: memory holds a few frames whatever the film's or the crossfade's
  length. A process starts per batch rather than per clip, since starting ffmpeg costs about a tenth of a second.

Command builders return plain argument lists, so they are tested without encoding anything. ffmpeg writes the
path it is given; callers pass a temporary name beside the target and rename it into place.

The module is longer than 500 lines because the two ways share their segments and commands, and the decoding
lanes, batches and blending of :func:`render_film` only make sense read together.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from pipelines.ffmpeg import (
    AUDIO_DEMUXERS,
    VIDEO_DEMUXERS,
    VideoError,
    ffmpeg_quiet,
    file_input,
    find_tools,
    last_lines,
    raw_input_arguments,
    read_into,
    start_process,
    stderr_tail,
    stop_process,
)
from pipelines.probe import probe_audio
from pipelines.video import SCALE_FLAGS, h264_output_arguments

logger = logging.getLogger(__name__)

DECODE_BATCH = 8  # clips per decoding process: fewer process starts, and a bounded number of open files
AUDIO_BITRATE = "192k"


# What a film is made of.


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
    """A music track under the whole film: looped if shorter, cut if longer, faded out over the last seconds.
    It is read only as audio, as ``demuxer`` (None: as :func:`render_film` finds it is by probing it)."""

    path: Path
    seconds: float  # the film's length
    fade_out: float = 2.0
    demuxer: str | None = None


# Command builders.


def concat_list(paths: Sequence[Path | str]) -> str:
    """A concat demuxer script naming ``paths`` (absolute; quotes escaped as the demuxer reads them)."""
    lines = ["ffconcat version 1.0"]
    for path in paths:
        quoted = str(Path(path).resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def concat_copy_command(ffmpeg: str, list_path: Path | str, out_path: Path | str) -> list[str]:
    """ffmpeg arguments that join the files a concat script names into one MP4 by stream copy (no re-encoding).

    The script is read as a concat script, and every file it names (local files only) as MP4/MOV.
    """
    return ffmpeg_quiet(
        ffmpeg,
        "-y",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        "concat,mov",  # the demuxer passes both lists on to each file it opens
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
        arguments += ["-threads", "1", *seek, *file_input(clip.path, VIDEO_DEMUXERS)]
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
        arguments += ["-stream_loop", "-1", *file_input(audio.path, AUDIO_DEMUXERS, demuxer=audio.demuxer)]
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
        raise VideoError(f"ffmpeg could not join the clips: {last_lines(done.stderr)}")


def film_frame_count(segments: Sequence[Segment], crossfade_frames: int | Sequence[int]) -> int:
    """Frames in the film: every segment's frames, less the crossfade at each join."""
    return sum(s.frames for s in segments) - sum(_joins(len(segments), crossfade_frames))


def _joins(count: int, crossfade_frames: int | Sequence[int]) -> list[int]:
    """The dissolve at each of the joins between ``count`` segments: one for all, or one each."""
    if isinstance(crossfade_frames, int):
        return [crossfade_frames] * max(0, count - 1)
    joins = [int(frames) for frames in crossfade_frames]
    if len(joins) != max(0, count - 1) or any(frames < 0 for frames in joins):
        raise ValueError(f"{count} segments have {max(0, count - 1)} joins, got crossfades {joins}")
    return joins


def render_film(
    segments: Sequence[Segment],
    out_path: Path,
    *,
    width: int,
    height: int,
    fps: int,
    crossfade_frames: int | Sequence[int] = 0,
    audio: AudioTrack | None = None,
    crf: int = 18,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Encode ``segments`` one after another into ``out_path``, crossfading each join; returns the frame count.

    ``crossfade_frames`` is the dissolve at every join, or a list of one per join (0: a cut).

    ``progress(done, total)`` is called as frames are encoded; if it raises, encoding stops, the partial file is
    removed and the exception goes on to the caller. Any failure leaves no file at ``out_path``.
    """
    if not segments:
        raise ValueError("a film needs at least one segment")
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sizes, got {width}x{height}")
    joins = _joins(len(segments), crossfade_frames)
    for index, segment in enumerate(segments):
        needs = (joins[index - 1] if index > 0 else 0) + (joins[index] if index < len(joins) else 0)
        if segment.frames < max(1, needs):
            raise ValueError(f"segment {index + 1} has {segment.frames} frames, too few for its crossfades")
    out_path = Path(out_path)
    if audio is not None and audio.demuxer is None:  # a playlist or a picture is refused here, with its reason
        audio = AudioTrack(audio.path, audio.seconds, audio.fade_out, probe_audio(audio.path).demuxer or None)
    total = film_frame_count(segments, joins)
    ffmpeg = find_tools().ffmpeg
    command = film_encode_command(ffmpeg, width, height, fps, out_path, audio=audio, crf=crf)
    every = max(1, fps // 2)
    done = 0
    written = False
    try:
        with tempfile.TemporaryFile() as stderr, _Frames(segments, ffmpeg, width, height, fps) as frames:
            encoder = start_process(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
            assert encoder.stdin is not None
            try:
                for frame in _crossfaded(frames, segments, joins):
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
                stop_process(encoder)
            if returncode != 0:
                raise VideoError(f"ffmpeg could not write {out_path.name}: {stderr_tail(stderr)}")
            if done != total:
                raise VideoError(f"the encoder took {done} of {total} frames")
        written = True
        return total
    finally:
        if not written:
            out_path.unlink(missing_ok=True)


def _crossfaded(frames: _Frames, segments: Sequence[Segment], joins: Sequence[int]) -> Iterator[np.ndarray]:
    """The film's frames: each segment in turn, its last ``joins[i]`` frames blended with the next one's first.

    Neighbouring segments come from different lanes (even and odd), so a blend reads both as they are decoded and
    nothing is held back.
    """
    for index, segment in enumerate(segments):
        head = joins[index - 1] if index > 0 else 0  # already blended into the join before
        tail = joins[index] if index < len(joins) else 0
        for _ in range(segment.frames - head - tail):
            yield frames.next(index)
        for weight in (round(256 * (j + 1) / (tail + 1)) for j in range(tail)):
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
        self.process = start_process(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)

    def read(self) -> np.ndarray:
        assert self.process.stdout is not None
        frame = np.empty(self.frame_size, dtype=np.uint8)
        got = read_into(self.process.stdout, memoryview(frame))
        if got != self.frame_size:
            self.process.wait()
            raise VideoError(f"ffmpeg could not decode {self.names}: {stderr_tail(self.stderr)}")
        return frame

    def finish(self) -> None:
        """Wait for a process whose frames were all read; it must end cleanly, with nothing more to say."""
        assert self.process.stdout is not None
        extra = self.process.stdout.read(1)
        self.process.stdout.close()
        returncode = self.process.wait()
        try:
            if returncode != 0:
                raise VideoError(f"ffmpeg could not decode {self.names}: {stderr_tail(self.stderr)}")
            if extra:
                raise VideoError(f"ffmpeg gave more frames than asked for from {self.names}")
        finally:
            self.stderr.close()

    def close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        stop_process(self.process)
        self.stderr.close()
