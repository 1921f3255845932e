"""An MP4's first video track, read from its boxes without starting a process: do clips join by stream copy?

Stream copy (ffmpeg's concat demuxer with ``-c copy``) is only correct when every clip carries the same codec
configuration, since the output has one sample description. :func:`read_mp4_video` reads the track's sample
entry (codec, size, the ``avcC`` and other configuration boxes), its timescale and frame durations from the
``moov`` box, seeking past the others (``mdat`` is large), and the chroma format and bit depth from the H.264
sequence parameter set; :meth:`Mp4Video.joinable_with` compares two tracks.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from pipelines.ffmpeg import VideoError

# H.264 profiles whose sequence parameter set spells out chroma format and bit depth (ITU-T H.264, 7.3.2.1.1).
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


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
