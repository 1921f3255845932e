"""Writing and reading H.264 takes through ffmpeg, checked by what the real ffprobe reads.

Frames are crops of a real photograph (scikit-image's astronaut) along a seeded random walk: H.264 is lossy, so
round trips are compared by mean error on natural content, and white noise would only measure the codec's worst
case.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import probes
import pytest
from PIL import Image

import pipelines.ffmpeg as ffmpeg_tools
import pipelines.video as video
from pipelines.backend import BackendError
from pipelines.ffmpeg import FFmpegTools, VideoError, find_tools
from pipelines.probe import VideoInfo, probe
from pipelines.video import (
    decode_command,
    encode_command,
    frames_sha256,
    last_frame,
    read_frames,
    write_mp4,
    write_thumbnail,
)

WIDTH, HEIGHT, FPS, FRAMES = 64, 48, 8, 17


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((160, 160), Image.Resampling.LANCZOS))


def walk(photo: np.ndarray, count: int, seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """``count`` crops of ``photo`` along a seeded random walk of small steps (a hand-held camera)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-3, 4, size=(count, 2))
    x, y = (photo.shape[1] - width) // 2, (photo.shape[0] - height) // 2
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for index, (dx, dy) in enumerate(steps):
        x = int(np.clip(x + dx, 0, photo.shape[1] - width))
        y = int(np.clip(y + dy, 0, photo.shape[0] - height))
        frames[index] = photo[y : y + height, x : x + width]
    return frames


@pytest.fixture(scope="module")
def clip(photo: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path, VideoInfo]:
    frames = walk(photo, FRAMES)
    path = tmp_path_factory.mktemp("clip") / "take.mp4"
    return frames, path, write_mp4(frames, FPS, path)


def ffprobe_json(path: Path) -> dict:
    """The real ffprobe's view, counting frames by decoding them."""
    entries = "stream=codec_name,pix_fmt,width,height,nb_read_frames,avg_frame_rate,duration,color_space"
    return probes.ffprobe(path, entries, count_frames=True, first_video=True)["streams"][0]


def test_encode_command_is_bit_exact_h264_from_raw_rgb_on_stdin() -> None:
    command = encode_command("/usr/bin/ffmpeg", 640, 384, 16, Path("out/take.mp4.tmp"), crf=20)
    assert command[0] == "/usr/bin/ffmpeg" and command[-1] == "out/take.mp4.tmp"
    assert all(isinstance(argument, str) for argument in command)

    def value(option: str) -> str:
        return command[command.index(option) + 1]

    assert value("-c:v") == "libx264" and value("-crf") == "20" and value("-preset") == video.PRESET
    assert value("-pix_fmt") == "rgb24"  # the input's, which comes first
    assert command[command.index("-i") + 1] == "pipe:0" and value("-f") == "rawvideo" and value("-s") == "640x384"
    assert value("-framerate") == "16"
    assert "yuv420p" in command[command.index("-i") :]
    assert value("-fflags") == "+bitexact" and value("-flags:v") == "+bitexact"
    assert value("-map_metadata") == "-1" and value("-movflags") == "+faststart"
    assert value("-threads") == str(video.THREADS)  # x264's output depends on its thread count
    assert command[-3:-1] == ["-f", "mp4"]  # callers write to a temporary name without the extension


def test_written_file_is_what_ffprobe_reads(clip: tuple[np.ndarray, Path, VideoInfo]) -> None:
    _, path, info = clip
    stream = ffprobe_json(path)
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert (stream["width"], stream["height"]) == (WIDTH, HEIGHT)
    assert int(stream["nb_read_frames"]) == FRAMES
    assert abs(float(stream["duration"]) - FRAMES / FPS) <= 1 / FPS
    assert stream["color_space"] == "bt709"
    assert info == VideoInfo(WIDTH, HEIGHT, float(FPS), FRAMES, info.duration, "h264", "yuv420p")
    assert abs(info.duration - FRAMES / FPS) <= 1 / FPS


def test_the_same_frames_give_the_same_bytes(clip: tuple[np.ndarray, Path, VideoInfo], tmp_path: Path) -> None:
    frames, path, _ = clip
    again = tmp_path / "again.mp4"
    write_mp4(frames, FPS, again)
    assert again.read_bytes() == path.read_bytes()
    other = frames.copy()
    other[5] = 255 - other[5]
    write_mp4(other, FPS, tmp_path / "other.mp4")
    assert (tmp_path / "other.mp4").read_bytes() != path.read_bytes()
    assert b"Lavf" not in path.read_bytes()  # no library version stamped in


def test_read_frames_is_close_to_what_was_written(clip: tuple[np.ndarray, Path, VideoInfo]) -> None:
    frames, path, _ = clip
    decoded = read_frames(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(np.int16) - frames.astype(np.int16)).mean(axis=(1, 2, 3))
    assert error.max() < 8, error
    # Every frame in its place: each decoded frame is nearer its own source than its neighbours'.
    for index in range(1, FRAMES - 1):
        own = np.abs(decoded[index].astype(int) - frames[index]).mean()
        assert own < np.abs(decoded[index].astype(int) - frames[index - 1]).mean() or np.array_equal(
            frames[index], frames[index - 1]
        )


def test_colours_survive_the_round_trip(tmp_path: Path) -> None:
    """A saturated flat colour comes back within a level or two: the BT.709 tag is honoured both ways."""
    flat = np.empty((3, 32, 32, 3), dtype=np.uint8)
    flat[...] = (200, 40, 90)
    write_mp4(flat, FPS, tmp_path / "flat.mp4")
    mean = read_frames(tmp_path / "flat.mp4").reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - (200, 40, 90)).max() < 2.5, mean


def test_last_frame_is_the_final_decoded_frame(clip: tuple[np.ndarray, Path, VideoInfo]) -> None:
    _, path, _ = clip
    image = last_frame(path)
    assert image.mode == "RGB" and image.size == (WIDTH, HEIGHT)
    assert np.array_equal(np.asarray(image), read_frames(path)[-1])


def test_last_frame_of_a_long_take_decodes_only_its_end(photo: np.ndarray, tmp_path: Path) -> None:
    """15 s with scene cuts (so x264 puts keyframes in the middle): seeking lands past the start and still
    gives exactly the last frame."""
    scenes = [walk(photo, 30, seed=seed) for seed in range(4)]
    scenes[1] = 255 - scenes[1]
    scenes[3] = scenes[3][..., ::-1].copy()
    frames = np.concatenate(scenes)
    path = tmp_path / "long.mp4"
    write_mp4(frames, FPS, path)
    assert np.array_equal(np.asarray(last_frame(path)), read_frames(path)[-1])
    tail = subprocess.run(
        decode_command(find_tools().ffmpeg, path, from_end=video.LAST_FRAME_SEEK_SECONDS),
        capture_output=True,
        check=True,
    ).stdout
    assert 0 < len(tail) // (WIDTH * HEIGHT * 3) < len(frames)


def test_frames_sha256_sees_one_pixel_and_the_shape(clip: tuple[np.ndarray, Path, VideoInfo]) -> None:
    frames = clip[0]
    assert frames_sha256(frames) == frames_sha256(frames.copy())
    changed = frames.copy()
    changed[9, 20, 30, 1] ^= 1
    assert frames_sha256(changed) != frames_sha256(frames)
    assert frames_sha256(frames.reshape(FRAMES, WIDTH, HEIGHT, 3)) != frames_sha256(frames)
    assert len(frames_sha256(frames)) == 64


@pytest.mark.parametrize("size", [(63, 48), (64, 47)])
def test_odd_sizes_are_refused(size: tuple[int, int], tmp_path: Path) -> None:
    width, height = size
    with pytest.raises(ValueError, match="even"):
        write_mp4(np.zeros((3, height, width, 3), dtype=np.uint8), FPS, tmp_path / "odd.mp4")
    assert not (tmp_path / "odd.mp4").exists()


def test_frames_that_are_not_uint8_rgb_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(np.zeros((3, 48, 64, 3), dtype=np.float32), FPS, tmp_path / "float.mp4")
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(np.zeros((3, 48, 64), dtype=np.uint8), FPS, tmp_path / "grey.mp4")


def test_a_text_file_or_a_still_image_is_not_a_video(tmp_path: Path, photo: np.ndarray) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is a shot list, not a video\n" * 20)
    with pytest.raises(VideoError, match=r"notes\.mp4") as caught:
        probe(text)
    assert isinstance(caught.value, BackendError)
    still = tmp_path / "still.png"
    Image.fromarray(photo).save(still)
    with pytest.raises(VideoError, match="still image"):
        probe(still)
    with pytest.raises(VideoError):
        probe(tmp_path / "missing.mp4")


def test_a_failing_ffmpeg_is_a_video_error_with_its_message(
    clip: tuple[np.ndarray, Path, VideoInfo], tmp_path: Path
) -> None:
    target = tmp_path / "no such folder" / "take.mp4"
    with pytest.raises(VideoError, match="No such file or directory"):
        write_mp4(clip[0], FPS, target)
    assert not target.exists()


def test_a_file_that_fails_its_check_is_removed(
    clip: tuple[np.ndarray, Path, VideoInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg wrote the file, but it does not read back: nothing half-made is left at the path."""
    seen: list[bool] = []

    def unreadable(path: Path) -> VideoInfo:
        seen.append(Path(path).stat().st_size > 0)
        raise VideoError("truncated")

    monkeypatch.setattr(video, "probe", unreadable)
    target = tmp_path / "take.mp4.tmp"
    with pytest.raises(VideoError, match="truncated"):
        write_mp4(clip[0], FPS, target)
    assert seen == [True] and not target.exists()


def test_a_container_without_a_frame_count_is_counted_by_decoding(
    clip: tuple[np.ndarray, Path, VideoInfo], tmp_path: Path
) -> None:
    mkv = tmp_path / "take.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip[1]), "-c", "copy", str(mkv)], check=True)
    info = probe(mkv)
    assert (info.num_frames, info.width, info.height, info.codec) == (FRAMES, WIDTH, HEIGHT, "h264")
    assert read_frames(mkv).shape[0] == FRAMES


def test_without_system_ffmpeg_the_bundled_one_is_used(
    clip: tuple[np.ndarray, Path, VideoInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """imageio-ffmpeg's binary and no ffprobe: writing, probing and reading all still work."""
    import imageio_ffmpeg

    bundled = imageio_ffmpeg.get_ffmpeg_exe()
    looked_up: list[str] = []

    def nothing_on_path(name: str) -> None:
        looked_up.append(name)
        return None

    monkeypatch.setattr(ffmpeg_tools.shutil, "which", nothing_on_path)
    assert find_tools() == FFmpegTools(bundled, None)
    frames, system_path, system_info = clip
    path = tmp_path / "bundled.mp4"
    looked_up.clear()
    info = write_mp4(frames, FPS, path)
    assert looked_up
    assert (info.width, info.height, info.num_frames, info.codec, info.pix_fmt) == (
        WIDTH,
        HEIGHT,
        FRAMES,
        "h264",
        "yuv420p",
    )
    assert info.fps == pytest.approx(FPS) and abs(info.duration - FRAMES / FPS) <= 1 / FPS
    # Probing a file the system ffmpeg wrote gives the same facts as ffprobe did (durations to 10 ms).
    fallback = probe(system_path)
    assert fallback.num_frames == system_info.num_frames and fallback.codec == system_info.codec
    assert abs(fallback.duration - system_info.duration) < 0.011
    decoded = read_frames(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(np.int16) - frames.astype(np.int16)).mean() < 8
    assert np.array_equal(np.asarray(last_frame(path)), decoded[-1])
    assert int(ffprobe_json(path)["nb_read_frames"]) == FRAMES  # and the real ffprobe agrees
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(VideoError):
        probe(text)


def test_when_no_ffmpeg_is_found_the_error_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio_ffmpeg

    def missing() -> str:
        raise RuntimeError("no ffmpeg exe could be found")

    monkeypatch.setattr(ffmpeg_tools.shutil, "which", lambda name: None)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    with pytest.raises(VideoError, match="apt install ffmpeg"):
        find_tools()


def test_thumbnail_is_a_small_png_with_the_frame_aspect(photo: np.ndarray, tmp_path: Path) -> None:
    frame = np.asarray(Image.fromarray(photo).resize((640, 384)))
    path = tmp_path / "thumb.tmp"  # a temporary name: the format is not guessed from it
    write_thumbnail(frame, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (320, 192)
        assert np.abs(np.asarray(image.convert("RGB"), dtype=float).mean() - frame.mean()) < 3
    small = frame[:40, :60]
    write_thumbnail(small, tmp_path / "small.png", max_side=320)
    with Image.open(tmp_path / "small.png") as image:
        assert image.size == (60, 40)  # never enlarged
    with pytest.raises(ValueError, match="uint8"):
        write_thumbnail(frame.astype(np.float32), tmp_path / "bad.png")


# Inputs read only as themselves.


def input_of(command: list[str], path: Path) -> list[str]:
    """The options ``command`` gives the input ``path``: everything from the previous input up to its ``-i``."""
    at = command.index(f"file:{path.absolute()}")
    assert command[at - 1] == "-i"
    before = [i for i, word in enumerate(command[: at - 1]) if word == "-i"]
    return command[(before[-1] + 2 if before else 0) : at - 1]


def test_every_media_input_is_one_local_file_read_by_a_whitelisted_demuxer(tmp_path: Path) -> None:
    from pipelines import edit
    from pipelines.ffmpeg import AUDIO_DEMUXERS, VIDEO_DEMUXERS
    from pipelines.probe import audio_probe_command, fallback_probe_command, probe_command

    clip, other, music = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "music.mp3"
    videos = [
        probe_command("ffprobe", clip),
        probe_command("ffprobe", clip, count_frames=True, demuxer="mov"),
        fallback_probe_command("ffmpeg", clip),
        decode_command("ffmpeg", clip, from_end=3.0, demuxer="mov"),
        edit.decode_batch_command("ffmpeg", [edit.ClipSource(clip, 4), edit.ClipSource(other, 4, 0.5)], 64, 48, 8),
    ]
    for command in videos:
        options = input_of(command, clip)
        assert options[options.index("-protocol_whitelist") + 1] == "file"
        assert options[options.index("-format_whitelist") + 1] == ",".join(VIDEO_DEMUXERS)
    assert input_of(videos[3], clip)[-2:] == ["-f", "mov"]  # what probe read it as, forced
    assert input_of(videos[4], other)[-2:] == ["-format_whitelist", ",".join(VIDEO_DEMUXERS)]
    track = edit.AudioTrack(music, 4.0, demuxer="mp3")
    for command in (
        audio_probe_command("ffprobe", music),
        edit.film_encode_command("ffmpeg", 64, 48, 8, "o", audio=track),
    ):
        options = input_of(command, music)
        assert options[options.index("-format_whitelist") + 1] == ",".join(AUDIO_DEMUXERS)
        assert options[options.index("-protocol_whitelist") + 1] == "file"
    assert input_of(edit.film_encode_command("ffmpeg", 64, 48, 8, "o", audio=track), music)[-2:] == ["-f", "mp3"]
    joined = edit.concat_copy_command("ffmpeg", tmp_path / "list.ffconcat", tmp_path / "out.mp4")
    assert joined[joined.index("-format_whitelist") + 1] == "concat,mov"  # the list, then MP4s only
    for demuxers in (VIDEO_DEMUXERS, AUDIO_DEMUXERS):
        assert not {"concat", "hls", "dash", "image2", "lavfi"} & set(demuxers)


def test_a_file_named_like_a_protocol_is_read_as_itself(
    clip: tuple[np.ndarray, Path, VideoInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg takes a relative ``concat:take.mp4`` for its concat protocol, reading ``take.mp4`` instead; the studio
    names every input as a ``file:`` URL."""
    frames, path, _ = clip
    monkeypatch.chdir(tmp_path)
    Path("concat:take.mp4").write_bytes(path.read_bytes())
    write_mp4(np.zeros((3, HEIGHT, WIDTH, 3), dtype=np.uint8), FPS, Path("take.mp4"))  # what would be read instead
    assert probe(Path("concat:take.mp4")).num_frames == FRAMES
    assert read_frames(Path("concat:take.mp4")).shape == frames.shape


def test_a_playlist_stored_as_a_take_is_refused_and_nothing_it_names_is_decoded(
    clip: tuple[np.ndarray, Path, VideoInfo], tmp_path: Path
) -> None:
    _, path, _ = clip
    (tmp_path / "real.mp4").write_bytes(path.read_bytes())
    playlist = tmp_path / "take.mp4"
    playlist.write_text("ffconcat version 1.0\nfile 'real.mp4'\n")
    for read in (probe, read_frames, last_frame):
        with pytest.raises(VideoError, match=r"take\.mp4 is a playlist naming other files \(concat\)"):
            read(playlist)
