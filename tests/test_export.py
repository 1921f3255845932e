"""Exporting the edit: the film, timelines, the contact sheet, and every bad input refused.

Results are checked with tools nobody here wrote: ffprobe (durations within one frame, size, rate, streams,
packet hashes), ffmpeg decoding frames and sound, OpenTimelineIO and its adapters reading the timelines back,
MLT's ``melt`` rendering the Kdenlive project, and Pillow reading the contact sheet. Projects are tiny (128x80
at 8 fps, shots of 1-2 s) and rendered by the animatic backend, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import probes
import pytest
from PIL import Image

from app.cli import main as cli_main
from pipelines import edit as editing
from pipelines import mp4
from pipelines.ffmpeg import VideoError
from pipelines.video import read_frames
from projects import contact_sheet, export, project, render_queue, storyboard, takes
from projects.edit_plan import ExportOptions, Progress, TitleCard, Trim, plan_edit
from projects.errors import Conflict, InvalidInput, StudioError
from projects.film import FilmResult
from projects.studio import Studio, open_studio
from projects.timeline import write_timeline
from projects.worker import RenderWorker

ROOT = Path(__file__).resolve().parents[1]
FPS = 8
WIDTH, HEIGHT = 128, 80
DURATIONS = (1.0, 2.0, 1.0)  # the module's film: three shots, 4 s in all
FRAME = 1 / FPS


# Helpers.


def make_film(
    studio: Studio,
    name: str = "Lighthouse",
    durations: tuple[float, ...] = DURATIONS,
    *,
    approve: tuple[int, ...] | None = None,
) -> list[int]:
    """A project with one rendered animatic take per shot, approved where asked (all by default); take ids."""
    project.create_project(studio, name, width=WIDTH, height=HEIGHT, fps=FPS)
    for index, seconds in enumerate(durations, start=1):
        storyboard.add_shot(
            studio,
            name,
            prompt=f"shot {index}: the keeper climbs the lighthouse stairs",
            title=f"Part {index}",
            scene=str((index + 1) // 2),  # scenes 1, 1, 2, ...: two scene cards with titles on
            duration=seconds,
            camera="dolly-in" if index % 2 else "pan-left",
        )
    render_queue.queue_renders(studio, name)
    RenderWorker(studio, score=False).run(once=True)
    made = sorted(takes.list_takes(studio, name).items, key=lambda take: take.shot_number)
    assert [take.status for take in made] == ["done"] * len(durations)
    for take in made:
        if approve is None or take.shot_number in approve:
            takes.approve_take(studio, take.id)
    return [take.id for take in made]


def export_film(
    studio: Studio,
    name: str,
    out: Path,
    options: ExportOptions | None = None,
    progress: Progress | None = None,
) -> FilmResult:
    """The film alone, through the export service."""
    return export.export_project(studio, name, out, options=options, progress=progress).film


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe's own account of the file: container duration and every stream, frames counted by decoding."""
    entries = (
        "stream=codec_type,codec_name,pix_fmt,width,height,avg_frame_rate,nb_read_frames,duration:format=duration"
    )
    data = probes.ffprobe(path, entries, count_frames=True)
    video = [s for s in data["streams"] if s["codec_type"] == "video"]
    audio = [s for s in data["streams"] if s["codec_type"] == "audio"]
    return {"duration": float(data["format"]["duration"]), "video": video, "audio": audio}


def packets(path: Path) -> list[tuple[bool, str]]:
    """(keyframe, SHA-256 of the bytes) of every video packet, as ffprobe reads them."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_data_hash",
            "sha256",
            "-show_entries",
            "packet=flags,data_hash",
            "-of",
            "csv=p=0",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split(",") for line in out.split()]
    return [(flags.startswith("K"), digest) for flags, digest in rows]


def decoded_frame_hashes(path: Path) -> list[str]:
    """An MD5 of every decoded frame (ffmpeg's framemd5 muxer)."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5", "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def sound(path: Path, rate: int = 8000) -> np.ndarray:
    """The file's audio decoded by ffmpeg to mono floats."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32)


def tone(path: Path, seconds: float) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", str(path)],
        check=True,
    )
    return path


def read_timeline(path: Path) -> Any:
    import opentimelineio as otio

    with contextlib.redirect_stdout(io.StringIO()):  # the Kdenlive adapter prints a notice when it reads
        return otio.adapters.read_from_file(str(path))


def take_path(studio: Studio, take_id: int) -> Path:
    path = takes.get_take(studio, take_id).video_path
    assert path is not None
    return path


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files an export may have left beside its target."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_within_a_frame(actual: float, expected: float, fps: int = FPS) -> None:
    assert abs(actual - expected) <= 1 / fps + 1e-6, f"{actual} s, expected {expected} s"


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, list[int]]]:
    """One rendered, approved project shared by the tests that only read it."""
    studio = open_studio(tmp_path_factory.mktemp("film") / "data")
    take_ids = make_film(studio)
    yield studio, take_ids
    studio.close()


# The film.


def test_a_plain_edit_is_joined_by_stream_copy(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, take_ids = film
    out = tmp_path / "film.mp4"
    seen: list[tuple[str, int, int]] = []

    result = export_film(studio, "Lighthouse", out, progress=lambda *report: seen.append(report))

    assert result.method == "stream copy"
    assert seen[-1] == ("copy", 3, 3) and ("verify", 3, 3) in seen
    probed = ffprobe(out)
    (video,) = probed["video"]
    assert probed["audio"] == []
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert (video["width"], video["height"], video["avg_frame_rate"]) == (WIDTH, HEIGHT, f"{FPS}/1")
    assert int(video["nb_read_frames"]) == sum(round(d * FPS) for d in DURATIONS) == result.frames
    assert_within_a_frame(probed["duration"], sum(DURATIONS))
    # Stream copy, not a re-encode: the film's packets are the takes' packets in order (the concat demuxer puts
    # each take's parameter sets in front of its keyframe, so only keyframes differ in bytes), and every decoded
    # frame is the same as the take's, which no lossy re-encode would give.
    sources = [take_path(studio, take_id) for take_id in take_ids]
    joined, originals = packets(out), [p for source in sources for p in packets(source)]
    assert [key for key, _ in joined] == [key for key, _ in originals]
    assert [h for key, h in joined if not key] == [h for key, h in originals if not key]
    assert decoded_frame_hashes(out) == [h for source in sources for h in decoded_frame_hashes(source)]


def test_the_stream_copy_command_copies_and_names_every_clip(tmp_path: Path) -> None:
    command = editing.concat_copy_command("ffmpeg", tmp_path / "list.ffconcat", tmp_path / "out.mp4")
    assert command[command.index("-f") + 1] == "concat"
    assert command[command.index("-c") + 1] == "copy"
    assert command[-1] == str(tmp_path / "out.mp4")
    script = editing.concat_list([tmp_path / "a.mp4", tmp_path / "it's.mp4"])
    assert script.splitlines() == [
        "ffconcat version 1.0",
        f"file '{tmp_path / 'a.mp4'}'",
        f"file '{tmp_path}/it'\\''s.mp4'",
    ]


def test_crossfades_shorten_the_film_by_one_crossfade_per_join(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, take_ids = film
    out = tmp_path / "crossfaded.mp4"
    frames_reported: list[int] = []

    result = export_film(
        studio,
        "Lighthouse",
        out,
        ExportOptions(crossfade=0.5),
        progress=lambda stage, done, total: frames_reported.append(done) if stage == "encode" else None,
    )

    assert result.method == "encode"
    expected = sum(DURATIONS) - (len(DURATIONS) - 1) * 0.5
    probed = ffprobe(out)
    (video,) = probed["video"]
    assert_within_a_frame(probed["duration"], expected)
    assert int(video["nb_read_frames"]) == result.frames == round(expected * FPS)
    assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == ("h264", "yuv420p", 128, 80)
    assert frames_reported == sorted(frames_reported) and frames_reported[-1] == result.frames
    # The middle of the first dissolve is a mix of the two takes, not either of them.
    made = read_frames(out).astype(np.float64)
    first, second = read_frames(take_path(studio, take_ids[0])), read_frames(take_path(studio, take_ids[1]))
    middle = 8 - 2  # shot 1 has 8 frames; the 4-frame dissolve covers its last 4 and shot 2's first 4
    a, b = first[middle].astype(np.float64), second[2].astype(np.float64)
    mixed = made[middle]
    assert np.abs(mixed - (a + b) / 2).mean() < np.abs(mixed - a).mean()
    assert np.abs(mixed - (a + b) / 2).mean() < np.abs(mixed - b).mean()


def test_titles_music_and_another_size_and_rate(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, _ = film
    music = tone(tmp_path / "music.wav", 0.7)  # shorter than the film: it must loop
    out = tmp_path / "titled.mp4"
    options = ExportOptions(width=128, height=128, fps=16, titles=True, title_seconds=1.0, audio=music, audio_fade=1.0)

    result = export_film(studio, "Lighthouse", out, options)

    # Cards: the project's name, then scene 1 (before shot 1) and scene 2 (before shot 3).
    expected = sum(DURATIONS) + 3 * 1.0
    probed = ffprobe(out)
    (video,) = probed["video"]
    (audio,) = probed["audio"]
    assert result.method == "encode" and result.audio
    assert (video["width"], video["height"], video["avg_frame_rate"]) == (128, 128, "16/1")
    assert audio["codec_name"] == "aac"
    assert_within_a_frame(float(video["duration"]), expected, fps=16)
    assert_within_a_frame(float(audio["duration"]), expected, fps=16)
    # The music loops to the end and fades out: loud a second before the end, nearly silent at the very end.
    samples = sound(out)
    rms = lambda start, stop: float(np.sqrt(np.mean(samples[int(start * 8000) : int(stop * 8000)] ** 2)))  # noqa: E731
    loud = rms(expected - 1.6, expected - 1.1)
    assert loud > 0.07  # ffmpeg's sine source plays at 1/8 of full scale: an RMS of 0.088
    assert min(rms(start, start + 0.5) for start in (0.5, 2.0, 3.5, 5.0)) > 0.07  # looped: sound all along
    assert rms(expected - 0.1, expected) < 0.2 * loud
    # The first second is the title card: dark background, a few bright letters.
    opening = read_frames(out)[4]
    assert opening.mean() < 40 and opening.max() > 200
    # The 128x80 takes are fitted into 128x128 on black: 24-pixel bars above and below, the picture between.
    shot_frame = read_frames(out)[round((1.0 + 1.0 + 0.5) * 16)]
    assert shot_frame[:20].max() < 30 and shot_frame[-20:].max() < 30 and shot_frame[30:98].mean() > 40


def test_decoding_in_batches_changes_no_frame(
    film: tuple[Studio, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    studio, _ = film
    options = ExportOptions(crossfade=0.25, titles=True, title_seconds=0.5)
    together = export_film(studio, "Lighthouse", tmp_path / "together.mp4", options)
    monkeypatch.setattr(editing, "DECODE_BATCH", 1)  # a process per clip, each started while the last is read
    apart = export_film(studio, "Lighthouse", tmp_path / "apart.mp4", options)
    assert together.frames == apart.frames
    assert decoded_frame_hashes(together.path) == decoded_frame_hashes(apart.path)


def test_memory_does_not_grow_with_the_films_length(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    import tracemalloc

    studio, take_ids = film
    clip = take_path(studio, take_ids[1])  # 16 frames of 128x80

    def peak(clips: int) -> int:
        segments = [editing.ClipSource(clip, 16) for _ in range(clips)]
        tracemalloc.start()
        try:
            frames = editing.render_film(
                segments, tmp_path / f"{clips}.mp4", width=WIDTH, height=HEIGHT, fps=FPS, crossfade_frames=6
            )
            assert frames == clips * 16 - (clips - 1) * 6
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(3), peak(40)  # 38 frames, then 400: ten times the film
    frame = WIDTH * HEIGHT * 3 // 2
    assert long < short + 4 * frame and long < 40 * frame


def test_trims_take_the_chosen_part_of_a_take(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, take_ids = film
    out = tmp_path / "trimmed.mp4"

    result = export_film(studio, "Lighthouse", out, ExportOptions(trims={2: Trim(0.5, 1.5)}))

    assert result.method == "encode"  # a trimmed clip cannot be stream-copied
    assert_within_a_frame(ffprobe(out)["duration"], 1.0 + 1.0 + 1.0)
    made = read_frames(out).astype(np.float64)
    take = read_frames(take_path(studio, take_ids[1])).astype(np.float64)
    first_of_shot_2 = made[8]
    assert np.abs(first_of_shot_2 - take[4]).mean() < 4  # the take's frame at 0.5 s, through one re-encode
    assert np.abs(first_of_shot_2 - take[4]).mean() < np.abs(first_of_shot_2 - take[0]).mean()


def test_bad_trims_are_refused(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, _ = film
    for trims, words in [
        ({2: Trim(1.5, 0.5)}, "0 <= in < out"),
        ({2: Trim(0.0, 9.0)}, "0 <= in < out"),
        ({7: Trim(0.0, 1.0)}, "no shot 7"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(words)):
            export_film(studio, "Lighthouse", tmp_path / "film.mp4", ExportOptions(trims=trims))
    assert list(tmp_path.iterdir()) == []


# Bad input: nothing is left at the output path.


def test_shots_without_an_approved_take_are_listed_then_placeholders_or_skipped(
    studio: Studio, tmp_path: Path
) -> None:
    make_film(studio, "Gaps", (1.0, 1.0, 2.0), approve=(1,))
    out = tmp_path / "out" / "film.mp4"
    out.parent.mkdir()

    with pytest.raises(Conflict, match=r"shots without an approved take: 2, 3"):
        export_film(studio, "Gaps", out)
    assert not out.exists()

    black = export_film(studio, "Gaps", out, ExportOptions(allow_missing="black"))
    assert black.placeholder_shots == (2, 3) and black.shots == (1,)
    assert_within_a_frame(ffprobe(out)["duration"], 4.0)
    frames = read_frames(out)
    assert frames[:8].mean() > 40 and frames[8:].max() < 20  # shot 1, then black

    skipped = export_film(studio, "Gaps", out, ExportOptions(allow_missing="skip"))
    assert skipped.skipped_shots == (2, 3) and skipped.method == "stream copy"
    assert_within_a_frame(ffprobe(out)["duration"], 1.0)

    with pytest.raises(InvalidInput, match="allow_missing"):
        export_film(studio, "Gaps", out, ExportOptions(allow_missing="grey"))


def test_missing_or_damaged_take_files_are_found_before_anything_is_written(studio: Studio, tmp_path: Path) -> None:
    take_ids = make_film(studio, "Damaged", (1.0, 1.0, 1.0))
    damaged, missing = take_path(studio, take_ids[0]), take_path(studio, take_ids[2])
    with damaged.open("ab") as f:
        f.write(b"\0")
    missing.unlink()
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    out = out_folder / "film.mp4"

    with pytest.raises(StudioError) as raised:
        export_film(studio, "Damaged", out)

    message = str(raised.value)
    assert "shot 1 (take 1): hash mismatch" in message and "shot 3 (take 1): missing" in message
    assert "shot 2" not in message
    assert list(out_folder.iterdir()) == []


def test_an_audio_file_that_is_not_audio_is_refused(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, take_ids = film
    text = tmp_path / "notes.mp3"
    text.write_text("these are not sounds\n" * 50)
    picture = tmp_path / "cover.wav"
    Image.new("RGB", (64, 64), "red").save(picture, format="PNG")
    silent_video = take_path(studio, take_ids[0])  # a video with no audio stream
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    for bad in (text, picture, silent_video, tmp_path / "nowhere.wav"):
        with pytest.raises(InvalidInput) as raised:
            export_film(studio, "Lighthouse", out_folder / "film.mp4", ExportOptions(audio=bad))
        assert raised.value.field == "audio" and bad.name in str(raised.value)
    assert list(out_folder.iterdir()) == []


def test_a_crossfade_longer_than_a_clip_is_refused(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, _ = film
    out = tmp_path / "film.mp4"
    # Shot 2 (2 s) sits between two joins: a 1.25 s crossfade needs 2.5 s of it. Shots 1 and 3 last 1 s.
    with pytest.raises(InvalidInput, match=r"crossfade.*shot 1 lasts 8 frames, needs 10.*shot 2 lasts 16 frames"):
        export_film(studio, "Lighthouse", out, ExportOptions(crossfade=1.25))
    with pytest.raises(InvalidInput, match="crossfade"):
        export_film(studio, "Lighthouse", out, ExportOptions(crossfade=-1))
    with pytest.raises(InvalidInput, match="shorter than one frame"):
        export_film(studio, "Lighthouse", out, ExportOptions(crossfade=0.01))
    assert not out.exists()


def test_an_output_folder_that_is_missing_or_not_writable_is_refused(
    film: tuple[Studio, list[int]], tmp_path: Path
) -> None:
    studio, _ = film
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        # A root user writes anywhere chmod allows nothing; /sys refuses even root.
        unwritable = locked if not os.access(locked, os.W_OK) else Path("/sys")
        cases = [
            (tmp_path / "no-such-folder" / "film.mp4", "does not exist"),
            (a_file / "film.mp4", "is not a folder"),
            (unwritable / "film.mp4", "cannot write in the folder"),
            (tmp_path / "film.mov", "must end in .mp4"),
        ]
        for out, words in cases:
            with pytest.raises(InvalidInput, match=words) as raised:
                export_film(studio, "Lighthouse", out)
            assert raised.value.field == "out"
            assert not out.exists()
    finally:
        locked.chmod(0o755)


def test_an_interrupted_export_leaves_no_file_and_keeps_the_old_one(
    film: tuple[Studio, list[int]], tmp_path: Path
) -> None:
    studio, _ = film
    out = tmp_path / "film.mp4"
    out.write_bytes(b"last week's cut")

    class Interrupted(Exception):
        pass

    def stop_half_way(stage: str, done: int, total: int) -> None:
        if stage == "encode" and done >= total // 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        export_film(studio, "Lighthouse", out, ExportOptions(crossfade=0.25), progress=stop_half_way)

    assert out.read_bytes() == b"last week's cut"
    assert leftovers(tmp_path) == []


def test_an_encoder_that_fails_midway_leaves_no_file(
    film: tuple[Studio, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    studio, _ = film
    out = tmp_path / "film.mp4"
    real = editing.film_encode_command

    def stopping_early(*args: Any, **kwargs: Any) -> list[str]:
        command = real(*args, **kwargs)
        return [*command[:-1], "-frames:v", "5", command[-1]]  # ffmpeg writes 5 frames and exits

    monkeypatch.setattr(editing, "film_encode_command", stopping_early)
    with pytest.raises(StudioError, match="could not write the film"):
        export_film(studio, "Lighthouse", out, ExportOptions(crossfade=0.25))
    assert not out.exists() and leftovers(tmp_path) == []


# Timelines.


def clip_durations(track: Any) -> list[float]:
    import opentimelineio as otio

    return [item.duration().to_seconds() for item in track if isinstance(item, otio.schema.Clip)]


@pytest.mark.parametrize("suffix", [".otio", ".xml", ".edl", ".kdenlive"])
def test_timelines_read_back_with_every_clip_and_duration(
    film: tuple[Studio, list[int]], tmp_path: Path, suffix: str
) -> None:
    import opentimelineio as otio

    studio, take_ids = film
    options = ExportOptions(crossfade=0.5, titles=True, title_seconds=1.0)
    edit = plan_edit(studio, "Lighthouse", options)

    result = write_timeline(edit, tmp_path / f"cut{suffix}")

    timeline = read_timeline(result.path)
    (video,) = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    pieces = video.find_clips()
    shots = [c for c in pieces if not isinstance(c.media_reference, otio.schema.GeneratorReference)]
    assert len(shots) == result.clips == 3 and len(pieces) == 6  # three takes, three title cards
    # Every take is referenced by its file. (OpenTimelineIO's EDL reader takes a dissolve's incoming media from
    # the outgoing clip's line, so there the EDL's own text is checked.)
    files = [take_path(studio, take_id) for take_id in take_ids]
    if suffix == ".edl":
        text = result.path.read_text()
        first_seen = [text.find(f"CLIP: {path.as_uri()}\n") for path in files]  # FROM CLIP / TO CLIP lines
        assert -1 not in first_seen and first_seen == sorted(first_seen)
    else:
        assert [otio.url_utils.filepath_from_url(c.media_reference.target_url) for c in shots] == list(map(str, files))
    # Cards and takes end to end, less one crossfade per join: the film's length.
    film_seconds = 3 * 1.0 + sum(DURATIONS) - 5 * 0.5
    assert edit.seconds == film_seconds
    assert_within_a_frame(video.duration().to_seconds(), film_seconds)
    if suffix != ".edl":
        # Each piece shows up to the middle of its dissolves (card, card, shot 1, shot 2, card, shot 3).
        assert clip_durations(video) == pytest.approx([0.75, 0.5, 0.5, 1.5, 0.5, 0.75], abs=1e-6)
    else:  # an EDL dissolve starts at the cut: the outgoing clip shows less, the incoming one more
        assert clip_durations(video) == pytest.approx([0.5, 0.5, 0.5, 1.5, 0.5, 1.0], abs=1e-6)
    if suffix in (".xml", ".edl"):
        assert result.rate == 24  # 8 fps is no SMPTE rate: three timecode frames to each of the film's


def test_a_timeline_carries_the_music_track(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    import opentimelineio as otio

    studio, _ = film
    music = tone(tmp_path / "music.wav", 1.5)
    edit = plan_edit(studio, "Lighthouse", ExportOptions(audio=music))
    for suffix in (".otio", ".xml", ".kdenlive"):
        timeline = read_timeline(write_timeline(edit, tmp_path / f"cut{suffix}").path)
        (audio,) = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
        # 4 s of film from a 1.5 s file: it plays twice whole, then 1 s of it.
        assert clip_durations(audio) == pytest.approx([1.5, 1.5, 1.0], abs=1 / 24), suffix


def test_a_self_contained_timeline_copies_the_media_and_links_relatively(
    film: tuple[Studio, list[int]], tmp_path: Path
) -> None:
    studio, take_ids = film
    edit = plan_edit(studio, "Lighthouse")
    result = write_timeline(edit, tmp_path / "cut.otio", self_contained=True)

    timeline = read_timeline(result.path)
    urls = [clip.media_reference.target_url for clip in timeline.find_clips()]
    assert urls == [f"cut_media/shot{n:03d}-take01.mp4" for n in (1, 2, 3)]
    for url, take_id in zip(urls, take_ids, strict=True):
        copied = tmp_path / url
        expected = takes.get_take(studio, take_id).video_sha256
        assert hashlib.sha256(copied.read_bytes()).hexdigest() == expected
    assert sorted(result.media) == sorted(tmp_path / url for url in urls)


@pytest.mark.skipif(shutil.which("melt") is None, reason="MLT's melt is not installed (apt install melt)")
def test_melt_renders_the_kdenlive_timeline_to_the_films_length(
    film: tuple[Studio, list[int]], tmp_path: Path
) -> None:
    studio, _ = film
    options = ExportOptions(crossfade=0.5, titles=True, title_seconds=1.0, audio=tone(tmp_path / "m.wav", 1.0))
    edit = plan_edit(studio, "Lighthouse", options)
    moved = tmp_path / "elsewhere"
    write_timeline(edit, tmp_path / "cut.kdenlive", self_contained=True)
    moved.mkdir()
    shutil.move(tmp_path / "cut.kdenlive", moved / "cut.kdenlive")
    shutil.move(tmp_path / "cut_media", moved / "cut_media")  # relative links still find the takes

    rendered = tmp_path / "melt.mp4"
    subprocess.run(
        ["melt", "-quiet", str(moved / "cut.kdenlive"), "-consumer", f"avformat:{rendered}", "vcodec=libx264"],
        check=True,
        capture_output=True,
        timeout=120,
    )

    probed = ffprobe(rendered)
    (video,) = probed["video"]
    assert (video["width"], video["height"]) == (WIDTH, HEIGHT)
    assert_within_a_frame(float(video["duration"]), edit.seconds)
    assert int(video["nb_read_frames"]) == edit.frames
    # Not black: the takes were found and drawn.
    assert read_frames(rendered)[round(edit.fps * 1.5)].mean() > 40


def test_a_timeline_with_an_unknown_extension_is_refused(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, _ = film
    with pytest.raises(InvalidInput, match=r"\.otio or \.xml or \.edl or \.kdenlive"):
        export.export_project(studio, "Lighthouse", tmp_path / "film.mp4", timeline=tmp_path / "cut.aaf")
    assert list(tmp_path.iterdir()) == []


# The contact sheet.


def test_the_contact_sheet_shows_every_shot_in_a_grid(studio: Studio, tmp_path: Path, photos: dict[str, Path]) -> None:
    make_film(studio, "Board", (1.0, 1.0, 1.0))
    storyboard.add_shot(studio, "Board", prompt="the lamp room", keyframe=photos["astronaut"], duration=2.0)
    storyboard.add_shot(studio, "Board", prompt="nothing drawn yet", duration=1.5, camera="w-16")

    png = contact_sheet.write_contact_sheet(studio, "Board", tmp_path / "board.png")
    pdf = contact_sheet.write_contact_sheet(studio, "Board", tmp_path / "board.pdf")

    with Image.open(png.path) as opened:
        sheet = np.asarray(opened.convert("RGB")).astype(np.int32)
        assert opened.size == (png.width, png.height)
    # Five shots in rows of four: two rows, the second holding one cell.
    columns, rows, cell, picture = contact_sheet.contact_sheet_layout(5, WIDTH, HEIGHT)
    assert (png.columns, png.rows, columns, rows) == (4, 2, 4, 2)
    assert (png.width, png.height) == contact_sheet.contact_sheet_size(5, WIDTH, HEIGHT)
    text_height = contact_sheet.SHEET_TEXT_LINES * contact_sheet.SHEET_LINE_HEIGHT + contact_sheet.SHEET_GAP // 2

    def box(index: int) -> np.ndarray:
        x = contact_sheet.SHEET_GAP + (index % 4) * (cell + contact_sheet.SHEET_GAP)
        y = (
            contact_sheet.SHEET_HEADER
            + contact_sheet.SHEET_GAP
            + (index // 4) * (picture + text_height + contact_sheet.SHEET_GAP)
        )
        return sheet[y : y + picture, x : x + cell]

    for index in range(3):  # the approved takes' thumbnails
        assert box(index).std() > 10
    assert box(3).std() > 10  # the keyframe photograph
    assert (box(4) == contact_sheet.SHEET_EMPTY_PICTURE).all()  # nothing to show: a grey box
    for index in range(5, 8):  # the rest of the last row is empty sheet
        assert (box(index) == contact_sheet.SHEET_BACKGROUND).all()

    data = pdf.path.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") >= 1
    box_points = re.search(rb"/MediaBox \[ ?0 0 ([\d.]+) ([\d.]+) ?\]", data)
    assert box_points is not None
    scale = 72 / contact_sheet.SHEET_PDF_DPI
    assert (float(box_points[1]), float(box_points[2])) == pytest.approx((png.width * scale, png.height * scale))


def test_the_contact_sheet_shows_each_shot_as_the_storyboard_does(studio: Studio, tmp_path: Path) -> None:
    """One rule for a shot's picture: the approved take's thumbnail, else the newest take's, else the keyframe
    (the sheet showed a grey box for a shot whose only take was not approved yet)."""
    make_film(studio, "Sheet", (1.0, 1.0), approve=(1,))
    sheet = contact_sheet.write_contact_sheet(studio, "Sheet", tmp_path / "sheet.png")
    with Image.open(sheet.path) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    _columns, _rows, cell, picture = contact_sheet.contact_sheet_layout(2, WIDTH, HEIGHT)
    for index, shot in enumerate(storyboard.list_shots(studio, "Sheet").items):
        assert shot.picture is not None
        x = contact_sheet.SHEET_GAP + index * (cell + contact_sheet.SHEET_GAP)
        y = contact_sheet.SHEET_HEADER + contact_sheet.SHEET_GAP
        expected = np.asarray(contact_sheet.sheet_picture(shot.picture, cell, picture))
        assert np.array_equal(pixels[y : y + picture, x : x + cell], expected), shot.number


def test_a_contact_sheet_of_an_empty_project_is_refused(studio: Studio, tmp_path: Path) -> None:
    project.create_project(studio, "Empty", width=WIDTH, height=HEIGHT, fps=FPS)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Conflict, match="no shots"):
        contact_sheet.write_contact_sheet(studio, "Empty", out / "board.png")
    with pytest.raises(Conflict, match="no shots"):
        export_film(studio, "Empty", out / "film.mp4")
    assert list(out.iterdir()) == []


# Title cards of the caller's own.


def test_title_cards_of_the_callers_own(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, _ = film
    cards = (TitleCard("The end", before_shot=99, seconds=1.5, background="navy"),)
    edit = plan_edit(studio, "Lighthouse", ExportOptions(title_cards=cards))
    assert [item.kind for item in edit.items] == ["take", "take", "take", "title"]
    assert edit.seconds == sum(DURATIONS) + 1.5
    with pytest.raises(InvalidInput, match="not a colour"):
        plan_edit(studio, "Lighthouse", ExportOptions(title_cards=(TitleCard("x", background="nope"),)))
    with pytest.raises(InvalidInput, match="needs some text"):
        plan_edit(studio, "Lighthouse", ExportOptions(title_cards=(TitleCard("  "),)))


# The MP4 reader that decides on stream copy.


def test_read_mp4_video_agrees_with_ffprobe(film: tuple[Studio, list[int]], tmp_path: Path) -> None:
    studio, take_ids = film
    first, second = (mp4.read_mp4_video(take_path(studio, take_id)) for take_id in take_ids[:2])
    (video,) = ffprobe(take_path(studio, take_ids[1]))["video"]
    assert (second.codec, second.width, second.height) == ("avc1", int(video["width"]), int(video["height"]))
    assert second.frame_count == int(video["nb_read_frames"]) and second.fps == FPS
    assert second.is_h264_yuv420p and first.joinable_with(second)

    other = tmp_path / "other.mp4"
    source = "testsrc2=size=128x80:rate=8:duration=1"
    command = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-pix_fmt", "yuv444p"]
    subprocess.run([*command, str(other)], check=True)
    different = mp4.read_mp4_video(other)
    assert different.chroma_format == 3 and not different.is_h264_yuv420p and not first.joinable_with(different)
    not_mp4 = tmp_path / "not.mp4"
    not_mp4.write_bytes(b"\0" * 100)
    with pytest.raises(VideoError, match="not an MP4"):
        mp4.read_mp4_video(not_mp4)


# The export service: every output from one plan of the edit.


def test_film_timeline_and_sheet_come_from_one_plan_that_hashes_each_take_once(
    film: tuple[Studio, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    studio, take_ids = film
    plans: list[Any] = []
    hashed: list[str] = []
    real_plan, real_check = export.plan_edit, studio.media.check

    def counting_plan(*args: Any, **kwargs: Any) -> Any:
        plans.append(args)
        return real_plan(*args, **kwargs)

    def counting_check(sha256: str, extension: str) -> str | None:
        hashed.append(sha256)
        return real_check(sha256, extension)

    monkeypatch.setattr(export, "plan_edit", counting_plan)
    monkeypatch.setattr(studio.media, "check", counting_check)

    result = export.export_project(
        studio,
        "Lighthouse",
        tmp_path / "film.mp4",
        timeline=tmp_path / "cut.otio",
        contact_sheet=tmp_path / "board.png",
        options=ExportOptions(crossfade=0.25),
    )

    assert len(plans) == 1
    assert sorted(hashed) == sorted(takes.get_take(studio, take_id).video_sha256 for take_id in take_ids)
    assert result.files == [tmp_path / "film.mp4", tmp_path / "cut.otio", tmp_path / "board.png"]
    assert all(path.is_file() for path in result.files)
    # The timeline is the film's cut: as long as the film, the same takes.
    assert result.timeline is not None and result.timeline.clips == 3
    assert result.timeline.seconds == result.film.seconds
    assert_within_a_frame(read_timeline(result.timeline.path).duration().to_seconds(), result.film.seconds)
    assert result.contact_sheet is not None and result.contact_sheet.shots == 3
    assert result.to_json() == {
        "film": result.film.to_json(),
        "timeline": result.timeline.to_json(),
        "contact_sheet": result.contact_sheet.to_json(),
    }


def test_a_bad_output_path_refuses_before_the_edit_is_planned_or_the_film_written(
    film: tuple[Studio, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    studio, _ = film
    plans: list[Any] = []
    real_plan = export.plan_edit

    def counting_plan(*args: Any, **kwargs: Any) -> Any:
        plans.append(args)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(export, "plan_edit", counting_plan)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "film.mp4"
    out.write_bytes(b"last week's cut")
    for asked, field in [
        ({"timeline": folder / "cut.aaf"}, "timeline"),
        ({"timeline": tmp_path / "no-such-folder" / "cut.otio"}, "timeline"),
        ({"timeline": folder / "cut.otio", "contact_sheet": folder / "board.jpg"}, "contact_sheet"),
        ({"self_contained": True}, "self_contained"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            export.export_project(studio, "Lighthouse", out, **asked)
        assert raised.value.field == field
    assert plans == []
    assert sorted(p.name for p in folder.iterdir()) == ["film.mp4"] and out.read_bytes() == b"last week's cut"


# The command line.


def test_export_command_writes_film_timeline_and_contact_sheet(
    film: tuple[Studio, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    studio, _ = film
    music = tone(tmp_path / "music.wav", 2.0)
    capsys.readouterr()
    code = cli_main(
        [
            "export",
            "Lighthouse",
            "--data-dir",
            str(studio.data_dir),
            "--out",
            str(tmp_path / "film.mp4"),
            "--timeline",
            str(tmp_path / "cut.kdenlive"),
            "--crossfade",
            "0.25",
            "--titles",
            "--audio",
            str(music),
            "--contact-sheet",
            str(tmp_path / "board.pdf"),
            "--self-contained",
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)  # one JSON object: nothing the adapters print gets in

    assert code == 0
    assert set(payload) == {"film", "timeline", "contact_sheet"}
    film_json = payload["film"]
    assert film_json["method"] == "encode" and film_json["audio"] is True and film_json["shots"] == [1, 2, 3]
    expected = sum(DURATIONS) + 3 * 2.0 - 5 * 0.25
    assert film_json["seconds"] == pytest.approx(expected)
    assert_within_a_frame(ffprobe(tmp_path / "film.mp4")["duration"], expected)
    assert payload["timeline"]["format"] == "kdenlive" and payload["timeline"]["clips"] == 3
    assert all(Path(p).is_file() for p in payload["timeline"]["media"])
    assert payload["contact_sheet"]["shots"] == 3
    assert (tmp_path / "board.pdf").read_bytes().startswith(b"%PDF")


def test_export_command_errors_exit_1_and_write_nothing(
    studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_film(studio, "Gaps", (1.0, 1.0), approve=(2,))
    base = ["export", "Gaps", "--data-dir", str(studio.data_dir), "--json"]
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "film.mp4"
    for extra, kind, words in [
        (["--out", str(out)], "Conflict", "shots without an approved take: 1"),
        (
            ["--out", str(out), "--allow-missing", "skip", "--timeline", str(folder / "x.aaf")],
            "InvalidInput",
            "--timeline: 'x.aaf' must end in",
        ),
        (["--out", str(out), "--allow-missing", "skip", "--self-contained"], "InvalidInput", "--timeline"),
    ]:
        capsys.readouterr()
        assert cli_main(base + extra) == 1
        error = json.loads(capsys.readouterr().out)["error"]
        assert error["type"] == kind and words in error["message"]
    assert list(folder.iterdir()) == []


# The benchmark script runs (small here; the budgets are checked in bench/).


@pytest.mark.slow
def test_export_benchmark_reports_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "bench/export.py", "--clips", "3", "--repeat", "1", "--size", "128x80", "--fps", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    report = json.loads(done.stdout)
    assert set(report["results"]) == {"stream_copy", "crossfade"}
    for result in report["results"].values():
        assert result["studio_median_s"] > 0 and result["ffmpeg_median_s"] > 0 and result["ratio"] > 0
    assert done.returncode == (0 if report["within_budget"] else 1)


# An export is all or nothing, and leaves nothing behind.


def test_an_export_whose_timeline_fails_leaves_the_earlier_film(
    studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_film(studio)
    film = tmp_path / "film.mp4"
    film.write_bytes(b"the film exported yesterday")

    def adapter_fails(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the adapter gave up")

    import opentimelineio as otio

    monkeypatch.setattr(otio.adapters, "write_to_string", adapter_fails)  # an OTIO adapter failing, as they can
    with pytest.raises(StudioError, match="could not write"):
        export.export_project(studio, "Lighthouse", film, timeline=tmp_path / "edit.otio")
    assert film.read_bytes() == b"the film exported yesterday"
    assert not (tmp_path / "edit.otio").exists() and leftovers(tmp_path) == []


def test_what_a_killed_export_left_is_removed_by_the_next(studio: Studio, tmp_path: Path) -> None:
    make_film(studio)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".film.mp4.{int(dead.stdout)}.k1x9.part"  # as a killed export leaves its film
    abandoned.write_bytes(b"half a film")
    ours = tmp_path / f".other.mp4.{os.getpid()}.a2b3.part"  # a live export's file is left alone
    ours.write_bytes(b"being written")

    export_film(studio, "Lighthouse", tmp_path / "film.mp4")

    assert not abandoned.exists() and ours.exists()
    assert leftovers(tmp_path) == [ours.name]


def test_exported_files_follow_the_users_umask(studio: Studio, tmp_path: Path) -> None:
    make_film(studio)
    previous = os.umask(0o022)
    try:
        result = export.export_project(
            studio, "Lighthouse", tmp_path / "film.mp4", contact_sheet=tmp_path / "sheet.png"
        )
    finally:
        os.umask(previous)
    assert [oct(path.stat().st_mode & 0o777) for path in result.files] == ["0o644", "0o644"]
