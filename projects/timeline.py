"""Writing timelines real editors open, through OpenTimelineIO and its adapters, from a planned edit.

Formats: ``.otio``, FCP 7 XML (``.xml``), CMX 3600 (``.edl``) and Kdenlive (``.kdenlive``). Takes are referenced
by absolute ``file://`` URL, or copied into a ``<name>_media`` folder beside the timeline and referenced by
relative path (``self_contained``). A timeline written from the same :class:`~projects.edit_plan.Edit` as the
film lasts as long as the film and cuts where it cuts.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projects.edit_plan import Edit, EditItem
from projects.errors import InvalidInput, StudioError
from projects.output_files import check_output_path, replacing

TIMELINE_ADAPTERS = {".otio": "otio_json", ".xml": "fcp_xml", ".edl": "cmx_3600", ".kdenlive": "kdenlive"}
TIMECODE_RATES = (24, 25, 30, 48, 50, 60)  # whole SMPTE rates that EDL and FCP 7 XML can state


@dataclass(frozen=True)
class TimelineResult:
    """What :func:`write_timeline` wrote."""

    path: Path
    format: str  # the OpenTimelineIO adapter: otio_json, fcp_xml, cmx_3600, kdenlive
    clips: int  # take clips on the video track
    seconds: float
    rate: float  # the timeline's frame rate (EDL and FCP 7 XML need a SMPTE rate)
    self_contained: bool
    media: tuple[Path, ...]  # the files the timeline refers to

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "clips": self.clips,
            "seconds": round(self.seconds, 3),
            "rate": self.rate,
            "self_contained": self.self_contained,
            "media": [str(path) for path in self.media],
        }


def timeline_rate(fps: int, adapter: str) -> int:
    """The timeline's frame rate: the film's, except where the format can only state SMPTE timecode rates.

    There the rate is the smallest such rate that is a whole multiple of the film's (8 fps -> 24, 16 -> 48), so
    every cut still falls on a frame; failing that, the nearest one.
    """
    if adapter not in ("cmx_3600", "fcp_xml") or fps in TIMECODE_RATES:
        return fps
    multiples = [rate for rate in TIMECODE_RATES if rate % fps == 0]
    return multiples[0] if multiples else min(TIMECODE_RATES, key=lambda rate: (abs(rate - fps), rate))


def write_timeline(edit: Edit, out_path: Path | str, *, self_contained: bool = False) -> TimelineResult:
    """Write a planned edit as a timeline; with ``self_contained`` the media is copied beside it.

    What each format keeps, as its OpenTimelineIO adapter writes it: ``.otio`` everything; FCP 7 XML the takes,
    dissolves, title cards as Text generators and the music track; CMX 3600 the video track only (cards and
    placeholders as black events, dissolves as ``D`` events); Kdenlive the takes, cards as plain colour clips and
    the music, with cuts where the film dissolves (the adapter writes no transitions).
    """
    import opentimelineio as otio

    out = check_output_path(out_path, tuple(TIMELINE_ADAPTERS), "timeline")
    adapter = TIMELINE_ADAPTERS[out.suffix.lower()]
    rate = timeline_rate(edit.fps, adapter)
    sources = [item.path for item in edit.takes if item.path is not None]
    if edit.audio is not None:
        sources.append(edit.audio)
    links = _copy_media(edit, out) if self_contained else {path: path.as_uri() for path in sources}
    timeline = build_otio_timeline(edit, rate, links, adapter=adapter)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the Kdenlive adapter prints notices on stdout
            text = otio.adapters.write_to_string(timeline, adapter_name=adapter)
    except Exception as exc:  # adapters raise their own error types: any of them is the export's failure
        raise StudioError(f"OpenTimelineIO could not write {out.name} ({adapter}): {exc}") from exc
    if adapter == "kdenlive":
        text = _kdenlive_profile(text, edit, rate)
    with replacing(out, "timeline") as temp:
        temp.write_text(text, encoding="utf-8")
    media = (
        tuple(out.parent / link for link in dict.fromkeys(links.values()))
        if self_contained
        else tuple(dict.fromkeys(sources))
    )
    return TimelineResult(
        path=out,
        format=adapter,
        clips=len(edit.takes),
        seconds=edit.seconds,
        rate=float(rate),
        self_contained=self_contained,
        media=media,
    )


def build_otio_timeline(edit: Edit, rate: int, links: Mapping[Path, str], *, adapter: str = "otio_json") -> Any:
    """The edit as an OpenTimelineIO timeline at ``rate``, as long as the film, shaped for ``adapter``.

    A crossfade becomes a dissolve centred on the cut: each clip shows its media up to the middle of the
    crossfade, and the rest of it is the handle the dissolve draws on. Placeholders are gaps. Title cards are what
    each format can hold: a colour generator (OTIO, Kdenlive), a Text generator (FCP 7 XML), a black event (EDL,
    whose ``BL`` reel also stands in for placeholders, so that a trailing one keeps its length). The music is an
    audio track of the file looped or cut to the film's length.
    """
    import opentimelineio as otio

    def at(frames: int) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(_rescale(frames, edit.fps, rate), rate)

    def span(start: int, length: int) -> otio.opentime.TimeRange:
        return otio.opentime.TimeRange(at(start), at(length))

    timeline = otio.schema.Timeline(name=edit.project.name, global_start_time=otio.opentime.RationalTime(0, rate))
    timeline.metadata["continuity"] = {
        "project": edit.project.name,
        "width": edit.width,
        "height": edit.height,
        "fps": edit.fps,
        "crossfade_frames": list(edit.joins),
    }
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(video)
    joins = [0, *edit.joins, 0]  # the dissolve into items[i] is joins[i], out of it joins[i + 1]

    def halves(frames: int) -> tuple[int, int]:
        return frames // 2, frames - frames // 2  # a dissolve's part before and after the cut

    previous: Any = None
    for index, item in enumerate(edit.items):
        head = halves(joins[index])[1]
        tail = halves(joins[index + 1])[0]
        shown = item.frames - head - tail
        metadata = {"kind": item.kind, "shot": item.shot_number, "text": item.text}
        piece: Any
        if item.kind == "take":
            assert item.path is not None
            take_length = otio.opentime.RationalTime(round(item.take_frames / item.take_fps * rate), rate)
            start = otio.opentime.RationalTime(round(item.source_start / item.take_fps * rate), rate) + at(head)
            piece = otio.schema.Clip(
                name=_clip_name(item),
                media_reference=otio.schema.ExternalReference(
                    target_url=links[item.path],
                    available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), take_length),
                ),
                source_range=otio.opentime.TimeRange(start, at(shown)),
            )
            metadata.update(take_id=item.take_id, take_number=item.take_number)
        elif item.kind == "title" or adapter == "cmx_3600":
            reference = _generator(item, adapter)
            reference.available_range = span(0, item.frames)
            piece = otio.schema.Clip(name=_clip_name(item), media_reference=reference, source_range=span(head, shown))
            if adapter == "cmx_3600":
                piece.metadata["cmx_3600"] = {"reel": "BL"}
            metadata.update(color=item.color, background=item.background)
        else:
            piece = otio.schema.Gap(name=_clip_name(item), source_range=span(0, shown))
        if joins[index] and isinstance(previous, otio.schema.Clip) and isinstance(piece, otio.schema.Clip):
            before, after = halves(joins[index])
            video.append(
                otio.schema.Transition(
                    name="Dissolve",
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=at(before),
                    out_offset=at(after),
                )
            )
        piece.metadata["continuity"] = metadata
        video.append(piece)
        previous = piece
    if edit.audio is not None:
        music = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
        timeline.tracks.append(music)
        film = at(edit.frames)
        length = otio.opentime.RationalTime(round(edit.audio_seconds * rate), rate)
        placed = otio.opentime.RationalTime(0, rate)
        loops = math.ceil(film.value / length.value) if length.value > 0 else 0
        for loop in range(1, loops + 1):
            part = min(length, film - placed)
            clip = otio.schema.Clip(
                # Distinct names: the FCP 7 XML writer folds clips that are equal into one back-reference.
                name=edit.audio.name if loops == 1 else f"{edit.audio.name} ({loop} of {loops})",
                media_reference=otio.schema.ExternalReference(
                    target_url=links[edit.audio],
                    available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), length),
                ),
                source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), part),
            )
            music.append(clip)
            placed += part
    return timeline


def _generator(item: EditItem, adapter: str) -> Any:
    import opentimelineio as otio

    if adapter == "cmx_3600":
        return otio.schema.GeneratorReference(name="Black", generator_kind="black")
    if adapter == "fcp_xml":
        # FCP 7's own Text generator (white text over black), which Premiere and Resolve import.
        parameter = {"parameterid": "str", "name": "Text", "value": item.text.replace("\n", "\r")}
        effect = {"effectcategory": "Text", "effecttype": "generator", "mediatype": "video", "parameter": parameter}
        return otio.schema.GeneratorReference(name="Text", generator_kind="Text", metadata={"fcp_xml": effect})
    return otio.schema.GeneratorReference(
        name="Title card", generator_kind="SolidColor", parameters={"color": item.background}
    )


def _rescale(frames: int, fps: int, rate: int) -> int:
    return frames * rate // fps if rate % fps == 0 else round(frames * rate / fps)


def _clip_name(item: EditItem) -> str:
    if item.kind == "title":
        return "Title: " + " / ".join(item.text.splitlines())
    name = f"Shot {item.shot_number}"
    if item.kind == "black":
        return f"{name} (no approved take)"
    return f"{name} take {item.take_number}" + (f": {item.text}" if item.text else "")


def _copy_media(edit: Edit, out: Path) -> dict[Path, str]:
    """Copy the takes (and music) into ``<timeline name>_media`` beside the timeline; links relative to it."""
    folder = out.parent / f"{out.stem}_media"
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create {folder}: {exc.strerror or exc}", "timeline") from exc
    links: dict[Path, str] = {}
    copies: list[tuple[Path, Path]] = []
    for item in edit.takes:
        assert item.path is not None
        if item.path not in links:
            name = f"shot{item.shot_number:03d}-take{item.take_number:02d}{item.path.suffix}"
            copies.append((item.path, folder / name))
            links[item.path] = f"{folder.name}/{name}"
    if edit.audio is not None:
        name = f"music{edit.audio.suffix.lower()}"
        copies.append((edit.audio, folder / name))
        links[edit.audio] = f"{folder.name}/{name}"
    for source, target in copies:
        try:
            with replacing(target, "timeline") as temp:
                shutil.copyfile(source, temp)
        except OSError as exc:
            raise StudioError(f"could not copy {source.name} to {target}: {exc.strerror or exc}") from exc
    return links


def _kdenlive_profile(text: str, edit: Edit, rate: int) -> str:
    """The adapter writes a 1080p profile and no length: give the project the film's size, and end it with it.

    Without an end, MLT plays the background track's default length (minutes of black) after the film.
    """
    from xml.etree import ElementTree as ET

    root = ET.fromstring(text)
    profile = root.find("profile")
    if profile is not None:
        divisor = math.gcd(edit.width, edit.height)
        profile.set("description", f"{edit.width}x{edit.height} {rate} fps")
        profile.set("width", str(edit.width))
        profile.set("height", str(edit.height))
        profile.set("display_aspect_num", str(edit.width // divisor))
        profile.set("display_aspect_den", str(edit.height // divisor))
    last = str(max(0, edit.frames - 1))
    for producer in root.iter("producer"):
        if producer.get("id") == "black_track":
            producer.set("in", "0")
            producer.set("out", last)
    for tractor in root.iter("tractor"):
        if tractor.get("global_feed") == "1":
            tractor.set("in", "0")
            tractor.set("out", last)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
