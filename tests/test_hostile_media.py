"""Hostile media: every bad file tried against the studio, and what the user sees.

:data:`HOSTILE` is the table: each row is a file a user (or a bundle, or a damaged disk) could hand the studio,
what it is fed to (the export's music, a take's video, a picture, face detection, the media store) and what comes
of it: a refusal whose message holds the fragment shown, or the right outcome. The tests after it look at each
fault closer, with tools nobody here wrote: ffprobe on the films, Pillow and numpy on the pictures, the kernel's
own count of a process's peak memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import probes
import pytest
from PIL import Image

from pipelines.edit import AudioTrack, ClipSource, StillSource, black_yuv420p, render_film
from pipelines.embedders import detect_faces
from pipelines.faces import load_face_recognizer
from pipelines.ffmpeg import VideoError
from pipelines.video import read_frames, write_mp4
from projects import contact_sheet, project, storyboard
from projects.edit_plan import ExportOptions, plan_edit
from projects.errors import InvalidImage, InvalidInput
from projects.images import check_image
from projects.maintenance import verify_media
from projects.studio import Studio, open_studio

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = Path(__file__).parent / "photos"
FPS = 8
MEMORY_BOUND_MB = 300  # what face detection may add to a process's peak, whatever the picture's shape


# Inputs: each writes one bad file into a folder (with whatever it names) and returns its path.


def tone(path: Path, seconds: float, frequency: int = 1000) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={frequency}:duration={seconds}",
            str(path),
        ],
        check=True,
    )
    return path


def small_video(path: Path) -> Path:
    frames = np.zeros((8, 48, 64, 3), dtype=np.uint8)
    frames[:, :, :32] = 200
    write_mp4(frames, FPS, path)
    return path


def ffconcat_music(folder: Path) -> Path:
    """A concat script named like an MP3, naming a real sound file next to it."""
    tone(folder / "secret.wav", 2.0)
    music = folder / "music.mp3"
    music.write_text("ffconcat version 1.0\nfile 'secret.wav'\n")
    return music


def hls_music(folder: Path) -> Path:
    """An HLS playlist named like an MP3, whose one segment is a real AAC file next to it."""
    tone(folder / "secret.wav", 2.0)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(folder / "secret.wav"), str(folder / "secret.aac")])
    music = folder / "music.mp3"
    music.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nsecret.aac\n#EXT-X-ENDLIST\n")
    return music


def text_music(folder: Path) -> Path:
    notes = folder / "notes.mp3"
    notes.write_text("these are not sounds\n" * 50)
    return notes


def picture_music(folder: Path) -> Path:
    cover = folder / "cover.wav"
    Image.new("RGB", (64, 64), "red").save(cover, format="PNG")
    return cover


def silent_video_music(folder: Path) -> Path:
    return small_video(folder / "silent.mp4")


def empty_music(folder: Path) -> Path:
    empty = folder / "empty.mp3"
    empty.write_bytes(b"")
    return empty


def header_only_wav(folder: Path) -> Path:
    wav = folder / "nothing.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc", "-frames:a", "0", str(wav)], check=True
    )
    return wav


def missing_music(folder: Path) -> Path:
    return folder / "nowhere.wav"


def folder_music(folder: Path) -> Path:
    inside = folder / "album.mp3"
    inside.mkdir()
    return inside


def ffconcat_video(folder: Path) -> Path:
    """A concat script stored as a take's video, naming a real video next to it."""
    small_video(folder / "other.mp4")
    clip = folder / "take.mp4"
    clip.write_text("ffconcat version 1.0\nfile 'other.mp4'\n")
    return clip


def hls_video(folder: Path) -> Path:
    small_video(folder / "other.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(folder / "other.mp4"), "-c", "copy", str(folder / "other.ts")],
        check=True,
    )
    clip = folder / "take.mp4"
    clip.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nother.ts\n#EXT-X-ENDLIST\n")
    return clip


def text_video(folder: Path) -> Path:
    notes = folder / "notes.mp4"
    notes.write_text("this is a shot list, not a video\n" * 20)
    return notes


def picture_video(folder: Path) -> Path:
    still = folder / "still.mp4"
    Image.new("RGB", (64, 48), "blue").save(still, format="PNG")
    return still


def gradient() -> np.ndarray:
    """The expected picture of the wide-sample rows: dark on the left, bright on the right, 256x64."""
    return np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (64, 256, 3)).copy()


def sixteen_bit_png(folder: Path) -> Path:
    path = folder / "gradient16.png"
    Image.fromarray(gradient()[:, :, 0].astype(np.uint16) * 257).save(path)  # Pillow's 'I;16'
    return path


def float_tiff(folder: Path) -> Path:
    path = folder / "gradient32.tiff"
    Image.fromarray(gradient()[:, :, 0].astype(np.float32) / 255.0).save(path)  # 'F', a fraction of white
    return path


def portrait() -> np.ndarray:
    with Image.open(PHOTOS / "obama-1.jpg") as image:
        return np.asarray(image.convert("RGB"))


def exif_rotated_jpeg(folder: Path) -> Path:
    """A portrait stored on its side with EXIF orientation 6 (turn 90 degrees clockwise to show), as phones do."""
    path = folder / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(portrait()).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    return path


def wide_strip(folder: Path) -> Path:
    path = folder / "strip.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (4, 12000, 3), dtype=np.uint8)).save(path)
    return path


def tall_strip(folder: Path) -> Path:
    path = folder / "pole.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (12000, 4, 3), dtype=np.uint8)).save(path)
    return path


def damaged_store_file(folder: Path) -> Path:
    path = folder / "astronaut.png"
    from skimage import data

    Image.fromarray(data.astronaut()).resize((128, 128)).save(path)
    return path


@dataclass(frozen=True)
class Hostile:
    """One bad input. ``refusal``: a fragment of the message the user is refused with (None: it is accepted);
    ``outcome``: what comes of an accepted one; ``expected``: the picture it must look like, where it is one."""

    make: Callable[[Path], Path]
    feeds: str  # "music" (the export's audio), "video" (a take's file), "picture", "faces", "store"
    refusal: str | None = None
    outcome: str = ""
    expected: Callable[[], np.ndarray] | None = None


HOSTILE = [
    # The export's music track.
    pytest.param(Hostile(ffconcat_music, "music", "is a playlist naming other files"), id="music-ffconcat-as-mp3"),
    pytest.param(Hostile(hls_music, "music", "is a playlist naming other files"), id="music-hls-playlist-as-mp3"),
    pytest.param(Hostile(text_music, "music", "is not an audio file"), id="music-text-as-mp3"),
    pytest.param(Hostile(picture_music, "music", "is a still image"), id="music-png-as-wav"),
    pytest.param(Hostile(silent_video_music, "music", "has no audio stream"), id="music-video-without-sound"),
    pytest.param(Hostile(empty_music, "music", "is empty (0 bytes)"), id="music-empty-file"),
    pytest.param(Hostile(header_only_wav, "music", "has no sound in it"), id="music-wav-of-no-samples"),
    pytest.param(Hostile(missing_music, "music", "does not exist"), id="music-missing-file"),
    pytest.param(Hostile(folder_music, "music", "is not a file"), id="music-a-folder"),
    # A take's video (a bundle brings files the studio did not write).
    pytest.param(Hostile(ffconcat_video, "video", "is a playlist naming other files"), id="video-ffconcat-as-mp4"),
    pytest.param(Hostile(hls_video, "video", "is a playlist naming other files"), id="video-hls-playlist-as-mp4"),
    pytest.param(Hostile(text_video, "video", "is not a video"), id="video-text-as-mp4"),
    pytest.param(Hostile(picture_video, "video", "is a still image"), id="video-png-as-mp4"),
    # Pictures: keyframes and reference images.
    pytest.param(
        Hostile(sixteen_bit_png, "picture", outcome="the gradient, not white", expected=gradient),
        id="picture-16-bit-png",
    ),
    pytest.param(Hostile(float_tiff, "picture", "is a TIFF image; use PNG, JPEG or WebP"), id="picture-float-tiff"),
    pytest.param(
        Hostile(exif_rotated_jpeg, "picture", outcome="upright, at its upright size", expected=portrait),
        id="picture-jpeg-exif-orientation-6",
    ),
    # Face detection on pictures of an extreme shape.
    pytest.param(Hostile(wide_strip, "faces", outcome=f"no face, under {MEMORY_BOUND_MB} MB"), id="faces-12000x4"),
    pytest.param(Hostile(tall_strip, "faces", outcome=f"no face, under {MEMORY_BOUND_MB} MB"), id="faces-4x12000"),
    # The media store.
    pytest.param(
        Hostile(damaged_store_file, "store", outcome="storing it again heals the damaged copy"),
        id="store-damaged-copy-of-the-same-size",
    ),
]


@pytest.fixture(scope="module")
def shots_without_takes(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    """A studio with one project of two shots and no takes: exported with black placeholders, it needs no render."""
    studio = open_studio(tmp_path_factory.mktemp("hostile") / "data")
    project.create_project(studio, "Harbour", width=64, height=64, fps=FPS)
    for index in (1, 2):
        storyboard.add_shot(studio, "Harbour", prompt=f"shot {index}: the boats come in", duration=1.0)
    yield studio
    studio.close()


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_media(case: Hostile, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    path = case.make(tmp_path)
    if case.feeds == "music":
        refused_as_music(case, path, request.getfixturevalue("shots_without_takes"))
        return
    check = {
        "video": refused_as_video,
        "picture": seen_as_picture,
        "faces": bounded_detection,
        "store": healed_by_the_store,
    }[case.feeds]
    check(case, path)


def refused_as_music(case: Hostile, path: Path, studio: Studio) -> None:
    with pytest.raises(InvalidInput) as raised:
        plan_edit(studio, "Harbour", ExportOptions(audio=path, allow_missing="black"))
    assert raised.value.field == "audio"
    assert path.name in str(raised.value) and case.refusal in str(raised.value), str(raised.value)


def refused_as_video(case: Hostile, path: Path) -> None:
    with pytest.raises(VideoError) as raised:
        read_frames(path)
    assert path.name in str(raised.value) and case.refusal in str(raised.value), str(raised.value)
    out = path.parent / "film.mp4"  # the film's decoder opens a clip without probing it first
    with pytest.raises(VideoError):
        render_film([ClipSource(path, 8)], out, width=64, height=48, fps=FPS)
    assert not out.exists()


def seen_as_picture(case: Hostile, path: Path) -> None:
    if case.refusal is not None:
        with pytest.raises(InvalidImage) as raised:
            check_image(path)
        assert case.refusal in str(raised.value)
        return
    from pipelines.pictures import open_rgb

    assert case.expected is not None
    expected = case.expected()
    checked = check_image(path)
    assert (checked.height, checked.width) == expected.shape[:2]
    seen = np.asarray(open_rgb(path))
    assert seen.shape == expected.shape
    assert np.abs(seen.astype(np.int16) - expected).mean() < 4  # JPEG's own loss at most
    height, width = expected.shape[:2]
    cell = np.asarray(contact_sheet.sheet_picture(path, width, height))  # the contact sheet shows it so too
    assert np.abs(cell.astype(np.int16) - expected).mean() < 6


MEASURE = """
import json, resource, sys
import numpy as np
from PIL import Image
from pipelines.embedders import detect_faces
from pipelines.faces import load_face_recognizer

recognizer = load_face_recognizer()
blank = np.zeros((96, 96, 3), dtype=np.uint8)
detect_faces(blank), recognizer.faces(blank)  # models and cascades loaded before measuring
with Image.open(sys.argv[1]) as opened:
    picture = opened.convert("RGB")
with open("/proc/self/status") as status:
    size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
# Address space capped a little above need: a runaway canvas fails at once instead of taking the machine.
resource.setrlimit(resource.RLIMIT_AS, ((size_kb + 1_500_000) * 1024, resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
found = [len(detect_faces(picture)), len(recognizer.faces(picture))]
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"faces": found, "grown_mb": grown}))
"""


def detection_memory(path: Path) -> dict[str, object]:
    """Faces found by the Haar cascade and by dlib in ``path``, and how far the process's peak memory grew."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def bounded_detection(case: Hostile, path: Path) -> None:
    measured = detection_memory(path)
    assert measured["faces"] == [0, 0]
    assert measured["grown_mb"] < MEMORY_BOUND_MB, measured


def healed_by_the_store(case: Hostile, path: Path) -> None:
    studio = open_studio(path.parent / "data")
    try:
        project.create_project(studio, "Harbour")
        storyboard.add_shot(studio, "Harbour", prompt="the harbour at dawn", duration=1.0, keyframe=path)
        stored = studio.media.path_for(hashlib.sha256(path.read_bytes()).hexdigest(), "png")
        damaged = bytearray(stored.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF  # one byte flipped: the same size, other bytes
        stored.write_bytes(bytes(damaged))
        assert not verify_media(studio).ok

        with studio.write() as session:
            again = studio.store_image(session, check_image(path))

        assert again.path == stored and stored.read_bytes() == path.read_bytes()
        assert studio.media.check(again.sha256, again.extension) is None
        assert verify_media(studio).ok
    finally:
        studio.close()


# Each fault, closer.


def test_a_playlist_given_as_music_puts_none_of_the_named_file_in_the_film(tmp_path: Path) -> None:
    """The film's encoder itself opens the music as one file, whoever built the track (no plan checked it)."""
    music = ffconcat_music(tmp_path)
    out = tmp_path / "film.mp4"
    still = StillSource(black_yuv420p(64, 48), 2 * FPS)
    try:
        render_film([still], out, width=64, height=48, fps=FPS, audio=AudioTrack(music, 2.0))
        refusal = ""
    except VideoError as exc:
        refusal = str(exc)
    streams = probes.ffprobe(out, "stream=codec_type")["streams"] if out.exists() else []
    assert [stream for stream in streams if stream["codec_type"] == "audio"] == []  # nothing of secret.wav
    assert "is a playlist naming other files" in refusal and not out.exists()


def test_real_music_still_plays_under_the_film(tmp_path: Path) -> None:
    music = tone(tmp_path / "music.mp3", 1.0, 440)
    out = tmp_path / "film.mp4"
    render_film(
        [StillSource(black_yuv420p(64, 48), 2 * FPS)], out, width=64, height=48, fps=FPS, audio=AudioTrack(music, 2.0)
    )
    streams = probes.ffprobe(out, "stream=codec_type,codec_name,duration")["streams"]
    (audio,) = [stream for stream in streams if stream["codec_type"] == "audio"]
    assert audio["codec_name"] == "aac" and abs(float(audio["duration"]) - 2.0) < 0.1


def wide_versions(picture: np.ndarray) -> dict[str, Image.Image]:
    """The same grey picture as a 16-bit PNG decodes, as a 32-bit integer and as a 32-bit float picture."""
    grey = np.asarray(Image.fromarray(picture).convert("L"))
    buffer = io.BytesIO()
    Image.fromarray(grey.astype(np.uint16) * 257).save(buffer, format="PNG")
    buffer.seek(0)
    return {
        "I;16": Image.open(buffer),
        "I": Image.fromarray(grey.astype(np.int32) * 257),
        "F": Image.fromarray(grey.astype(np.float32) / 255.0),
    }


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_faces_are_found_in_pictures_of_wide_samples(mode: str) -> None:
    """A reference photo saved at 16 or 32 bits is a face, not a white sheet, to both detectors."""
    picture = wide_versions(portrait())[mode]
    assert picture.mode == mode
    assert len(detect_faces(picture)) == 1
    assert len(load_face_recognizer().faces(picture)) == 1


def test_faces_in_the_real_photos_are_still_found() -> None:
    recognizer = load_face_recognizer()
    for path in sorted(PHOTOS.glob("*.jpg")):
        with Image.open(path) as image:
            picture = image.convert("RGB")
        assert len(detect_faces(picture)) == 1, path.name
        assert len(recognizer.faces(picture)) == 1, path.name


def test_a_16_bit_keyframe_renders_as_itself(tmp_path: Path) -> None:
    """End to end: a 16-bit PNG keyframe, rendered by the animatic backend, gives a take that shows the gradient."""
    from takes_made import finished_takes

    studio = open_studio(tmp_path / "data")
    try:
        project.create_project(studio, "Gradient", width=128, height=64, fps=FPS)
        keyframe = sixteen_bit_png(tmp_path)
        storyboard.add_shot(studio, "Gradient", prompt="a ramp", duration=1.0, camera="static", keyframe=keyframe)
        (take,) = finished_takes(studio, "Gradient", 1)
        assert take.video_path is not None
        first = read_frames(take.video_path)[0].astype(np.float64)
    finally:
        studio.close()
    assert 90 < first.mean() < 170  # white before: Pillow clipped every 16-bit sample to 255
    columns = first.mean(axis=(0, 2))  # the middle of the ramp (the camera crops to the take's frame)
    assert columns[-16:].mean() - columns[:16].mean() > 80 and np.all(np.diff(columns) >= -2)
