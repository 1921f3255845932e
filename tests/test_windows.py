"""Long shots rendered as windows: the plan, the camera cut at the joins, colour matching, and whole renders
with the real animatic backend (on a photograph) and the tiny SANA-WM model.

The backends are subclassed only to lower ``max_frames``, so that a short shot needs several windows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pipelines.animatic import AnimaticBackend
from pipelines.backend import (
    Backend,
    CancelToken,
    Capabilities,
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    RefinerSettings,
    RequestError,
)
from pipelines.camera import CameraError, keys_per_step, parse_camera
from pipelines.windows import match_colour, plan_windows, render_long, split_camera


class ShortAnimatic(AnimaticBackend):
    capabilities = dataclasses.replace(AnimaticBackend.capabilities, max_frames=17)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def shot(keyframe: Image.Image | None, **changes: object) -> GenerationRequest:
    values: dict[str, object] = {
        "prompt": "an astronaut turns to the camera",
        "width": 128,
        "height": 80,
        "fps": 8,
        "num_frames": 50,
        "seed": 1,
        "keyframe": keyframe,
        "camera": "static",
    }
    return GenerationRequest(**(values | changes))  # type: ignore[arg-type]


def total_frames(windows: list[int]) -> int:
    """Frames the windows make when each later one starts on the previous one's last frame."""
    return windows[0] + sum(frames - 1 for frames in windows[1:])


def join_indices(windows: list[int]) -> list[int]:
    """Index of the last frame of each window but the last, in the joined shot."""
    ends, end = [], windows[0] - 1
    for frames in windows[1:]:
        ends.append(end)
        end += frames - 1
    return ends


def step_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between each frame and the next."""
    return np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))


# The plan.


@pytest.mark.parametrize(
    ("num_frames", "max_frames", "stride", "expected"),
    [
        (100, 81, 4, [53, 49]),
        (961, 961, 8, [961]),
        (2000, 961, 8, [673, 665, 665]),
        (30, 9, 1, [9, 8, 8, 8]),
        (50, 17, 1, [14, 13, 13, 13]),
        (20, 9, 8, [9, 9, 9]),
        (10, 81, 4, [13]),  # one window, snapped up like the backend snaps
        (82, 82, 8, [49, 41]),  # 82 snaps to 89, more than one pass: two windows
        (2, 5, 4, [5]),
    ],
)
def test_plan_windows(num_frames: int, max_frames: int, stride: int, expected: list[int]) -> None:
    windows = plan_windows(num_frames, max_frames, stride)
    assert windows == expected
    for frames in windows:
        assert (frames - 1) % stride == 0 and stride + 1 <= frames <= max_frames
    made = total_frames(windows)
    assert made >= num_frames
    assert made - num_frames < stride  # no plan of stride*k+1 windows could overshoot less
    largest = (max_frames - 1) // stride * stride + 1
    assert len(windows) == -(-(made - 1) // (largest - 1))  # and no fewer windows would do
    assert max(windows) - min(windows) <= stride  # the work is shared evenly


@pytest.mark.parametrize(("num_frames", "max_frames", "stride"), [(1, 81, 4), (0, 81, 4), (100, 4, 4), (100, 1, 1)])
def test_plan_windows_refuses_nonsense(num_frames: int, max_frames: int, stride: int) -> None:
    with pytest.raises(ValueError):
        plan_windows(num_frames, max_frames, stride)
    with pytest.raises(ValueError, match="stride"):
        plan_windows(100, 81, 0)


# The camera at the joins.


def test_a_preset_repeats_in_every_window() -> None:
    assert split_camera("dolly-in", [14, 13, 13, 13]) == ["dolly-in"] * 4
    assert split_camera(" Pan-Left ", [9, 9]) == ["pan-left"] * 2


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        ([41, 41, 21], ["w-40", "jw-40", "none-20"]),
        ([35, 34, 34], ["w-34", "w-6,jw-27", "jw-13,none-20"]),  # 101 frames, max 41, stride 1
        ([41, 33, 33], ["w-40", "jw-32", "jw-8,none-24"]),  # stride 8: 104 steps, the hold covers the overshoot
    ],
)
def test_an_action_string_is_cut_at_the_joins(windows: list[int], expected: list[str]) -> None:
    camera = "w-40,jw-40,none-20"
    cut = split_camera(camera, windows)
    assert cut == expected
    for frames, action in zip(windows, cut, strict=True):
        assert parse_camera(action).frame_count == frames - 1
    # Step by step, the windows hold the keys the shot's path holds (then the last move, over the overshoot).
    held = [
        keys
        for frames, action in zip(windows, cut, strict=True)
        for keys in keys_per_step(parse_camera(action), frames - 1)
    ]
    assert held[:100] == keys_per_step(parse_camera(camera), 100)
    assert set(held[100:]) <= {frozenset()}


def test_a_path_longer_than_the_windows_is_refused() -> None:
    with pytest.raises(CameraError, match="100 steps"):
        split_camera("w-40,jw-40,none-20", [41, 41])
    with pytest.raises(CameraError):
        split_camera("x-40", [41])


# Colour at the joins.


def test_match_colour_moves_a_brightened_window_back(astronaut: Image.Image) -> None:
    frames = ShortAnimatic().generate(shot(astronaut, num_frames=17, camera="dolly-in")).frames
    previous, following = frames[:9], frames[8:]  # the following window starts on the previous one's last frame
    brighter = np.clip(following.astype(np.float32) * 1.08 + 16, 0, 255).astype(np.uint8)
    reference = previous[-1].astype(np.int16)
    before = np.abs(brighter[0].astype(np.int16) - reference).mean()
    matched = match_colour(brighter, previous[-1], brighter[0])
    after = np.abs(matched[0].astype(np.int16) - reference).mean()
    assert before > 10
    assert after < 0.2 * before, (before, after)
    assert matched.shape == brighter.shape and matched.dtype == np.uint8
    # The whole window moved, not just its first frame.
    assert np.abs(matched[-1].astype(np.int16) - following[-1]).mean() < 0.2 * before


def test_match_colour_leaves_a_window_that_already_matches_alone(astronaut: Image.Image) -> None:
    frames = ShortAnimatic().generate(shot(astronaut, num_frames=9)).frames
    assert np.array_equal(match_colour(frames, frames[0], frames[0]), frames)
    flat = np.full((2, 8, 8, 3), 100, dtype=np.uint8)  # no spread to match: only the mean moves
    assert np.all(match_colour(flat, np.full((8, 8, 3), 120, np.uint8), flat[0]) == 120)


# Whole renders.


def test_a_long_animatic_shot_renders_in_four_windows(astronaut: Image.Image) -> None:
    stages: list[str] = []
    result = render_long(
        ShortAnimatic(), shot(astronaut, camera="dolly-in"), progress=lambda s, i, n: stages.append(s)
    )
    assert result.frames.shape == (50, 80, 128, 3) and result.frames.dtype == np.uint8
    assert result.num_frames == 50 and result.fps == 8
    parameters = result.parameters
    assert parameters["windows"] == [14, 13, 13, 13]
    assert parameters["window_seeds"] == [1, 2, 3, 4]
    assert parameters["window_cameras"] == ["dolly-in"] * 4
    assert parameters["num_frames"] == 50 and parameters["seed"] == 1 and parameters["camera"] == "dolly-in"
    assert [window["num_frames"] for window in parameters["window_parameters"]] == [14, 13, 13, 13]
    assert list(dict.fromkeys(stages)) == ["window 1/4", "window 2/4", "window 3/4", "window 4/4"]
    assert "4 windows" in result.notes[0]
    assert result.timings["render"] > 0 and "colour_match" in result.timings
    assert result.peak_memory["frames_bytes"] == result.frames.nbytes
    # The shot opens as a single pass of the same request opens.
    single = AnimaticBackend().generate(shot(astronaut, camera="dolly-in", num_frames=14))
    assert np.array_equal(result.frames[:14], single.frames)


def test_animatic_windows_join_without_a_visible_seam(astronaut: Image.Image) -> None:
    result = render_long(ShortAnimatic(), shot(astronaut, camera="dolly-in"))
    steps = step_differences(result.frames)
    joins = join_indices(result.parameters["windows"])
    inside = np.delete(steps, joins)
    assert steps[joins].max() <= 2 * np.median(inside), (steps[joins], np.median(inside))


class DriftingPan(Backend):
    """A stand-in for an image-to-video model at the joins: its first frame re-renders its keyframe, the picture
    then slides one pixel a frame, and with every seed but 0 the whole window drifts in exposure and white
    balance, as a model's re-rendering does."""

    name = "drifting-pan"
    label = "Drifting pan"
    capabilities = Capabilities(
        image_to_video=True,
        text_only=False,
        reference_images=0,
        last_frame=False,
        camera_control="2d",
        refiner=False,
        max_frames=17,
    )

    def __init__(self) -> None:
        self.keyframes: list[np.ndarray] = []
        self.requests: list[GenerationRequest] = []

    def _generate(self, request: GenerationRequest, progress: ProgressFn, cancel: CancelToken) -> GenerationResult:
        self.requests.append(request)
        keyframe = np.asarray(request.keyframe.convert("RGB").resize((request.width, request.height)))
        self.keyframes.append(keyframe.copy())
        frames = np.stack([np.roll(keyframe, -step, axis=1) for step in range(request.num_frames)])
        if request.seed % 3:
            drift = np.array([1.06, 1.0, 0.94]) * (1 + 0.03 * (request.seed % 3))
            frames = np.clip(frames * drift + 6, 0, 255).astype(np.uint8)
        progress("render", request.num_frames, request.num_frames)
        return GenerationResult(frames, request.fps, request.parameters(), {"render": 0.0}, {})


def test_windows_start_on_the_previous_last_frame_and_are_colour_matched(astronaut: Image.Image) -> None:
    backend = DriftingPan()
    soft = astronaut.resize((128, 80)).filter(ImageFilter.GaussianBlur(2))  # so that a one-pixel slide is gentle
    result = render_long(backend, shot(soft, seed=0))
    windows = result.parameters["windows"]
    assert windows == [14, 13, 13, 13] and result.num_frames == 50
    joins = join_indices(windows)
    for keyframe, join in zip(backend.keyframes[1:], joins, strict=True):
        assert np.array_equal(keyframe, result.frames[join])  # the very frame the shot holds there
    steps = step_differences(result.frames)
    inside = np.delete(steps, joins)
    # No repeated frame at a join (a still step) and no jump in colour (a big one).
    assert steps[joins].min() > 0.5 * np.median(inside)
    assert steps[joins].max() <= 2 * np.median(inside), (steps[joins], np.median(inside))
    # Without the match the drift would show: the raw window is far from the frame before it.
    raw = backend.generate(shot(Image.fromarray(result.frames[13]), seed=1, num_frames=13))
    assert np.abs(raw.frames[1].astype(np.int16) - result.frames[13]).mean() > 1.5 * steps[joins[0]]


class DriftingPanToAnEnd(DriftingPan):
    capabilities = dataclasses.replace(DriftingPan.capabilities, last_frame=True, frame_stride=4)


def test_a_last_frame_goes_to_the_final_window_and_the_shot_keeps_its_end(astronaut: Image.Image) -> None:
    backend = DriftingPanToAnEnd()
    end = astronaut.rotate(180)
    result = render_long(backend, shot(astronaut, last_frame=end))
    assert result.parameters["windows"] == [17, 13, 13, 13]
    assert [request.last_frame is end for request in backend.requests] == [False, False, False, True]
    # 50 frames snap to 53 (4k+1); trimming would cut off the frame the shot was asked to end on.
    assert result.num_frames == 53 and result.parameters["num_frames"] == 53
    assert any("ends on the given last frame" in note for note in result.notes)
    trimmed = render_long(DriftingPanToAnEnd(), shot(astronaut))
    assert trimmed.num_frames == 50 and any("3 frames were trimmed to 50" in note for note in trimmed.notes)


def test_a_last_frame_the_backend_cannot_end_on_is_left_out_with_a_note(astronaut: Image.Image) -> None:
    backend = DriftingPan()
    result = render_long(backend, shot(astronaut, last_frame=astronaut))
    assert result.num_frames == 50 and all(request.last_frame is None for request in backend.requests)
    assert any("cannot end on a given last frame" in note for note in result.notes)


def test_cancel_between_windows(astronaut: Image.Image) -> None:
    cancel = CancelToken()
    stages: list[str] = []

    def progress(stage: str, step: int, total: int) -> None:
        stages.append(stage)
        if stage == "window 1/4" and step == total:
            cancel.cancel()  # the first window finishes; the second must not start

    with pytest.raises(GenerationCancelled, match="after 1 of 4 windows"):
        render_long(ShortAnimatic(), shot(astronaut), progress=progress, cancel=cancel)
    assert set(stages) == {"window 1/4"}


def test_cancel_within_a_window(astronaut: Image.Image) -> None:
    cancel = CancelToken()

    def progress(stage: str, step: int, total: int) -> None:
        if stage == "window 3/4":
            cancel.cancel()

    with pytest.raises(GenerationCancelled, match="of 13 frames"):
        render_long(ShortAnimatic(), shot(astronaut), progress=progress, cancel=cancel)


def test_a_shot_that_fits_renders_in_one_pass(astronaut: Image.Image) -> None:
    request = shot(astronaut, num_frames=17, camera="pan-right")
    result = render_long(ShortAnimatic(), request)
    assert "windows" not in result.parameters
    assert np.array_equal(result.frames, ShortAnimatic().generate(request).frames)


def test_an_action_string_is_followed_across_windows(astronaut: Image.Image) -> None:
    result = render_long(ShortAnimatic(), shot(astronaut, camera="w-20,jw-29"))
    assert result.parameters["window_cameras"] == ["w-13", "w-7,jw-5", "jw-12", "jw-12"]
    assert result.parameters["camera"] == "w-20,jw-29" and result.num_frames == 50


def test_requests_that_cannot_run_are_refused_before_any_window(astronaut: Image.Image) -> None:
    rendered: list[str] = []
    progress = lambda stage, step, total: rendered.append(stage)  # noqa: E731
    with pytest.raises(RequestError, match="40 steps but the shot has 50 frames"):
        render_long(ShortAnimatic(), shot(astronaut, camera="w-40"), progress=progress)
    with pytest.raises(RequestError, match=r"window 1/4: .*multiple of 8"):
        render_long(ShortAnimatic(), shot(astronaut, width=124), progress=progress)
    with pytest.raises(RequestError, match="camera"):
        render_long(ShortAnimatic(), shot(astronaut, camera="zoom-50"), progress=progress)
    assert rendered == []


# The tiny SANA-WM model.


@pytest.fixture(scope="module")
def short_sana_wm(sana_wm_folder: Path) -> Backend:
    from pipelines.loading import LoadSpec, PipelineCache
    from pipelines.sana_wm import SanaWMBackend

    class Short(SanaWMBackend):
        capabilities = dataclasses.replace(SanaWMBackend.capabilities, max_frames=9)

    return Short(LoadSpec(source=str(sana_wm_folder)), cache=PipelineCache())


def test_sana_wm_renders_a_long_shot_in_windows_of_8k_plus_1(short_sana_wm: Backend, astronaut: Image.Image) -> None:
    request = shot(astronaut, width=64, height=64, num_frames=20, steps=2, seed=7, camera="dolly-in")
    stages: list[str] = []
    result = render_long(short_sana_wm, request, progress=lambda s, i, n: stages.append(s))
    assert result.frames.shape == (20, 64, 64, 3) and result.frames.dtype == np.uint8
    parameters = result.parameters
    assert parameters["windows"] == [9, 9, 9] and parameters["window_seeds"] == [7, 8, 9]
    assert parameters["num_frames"] == 20 and parameters["backend"] == "sana-wm"
    assert [window["action"] for window in parameters["window_parameters"]] == ["w-8"] * 3
    assert "provenance" in parameters and all("provenance" not in w for w in parameters["window_parameters"])
    assert result.timings["backbone"] > 0 and "load" in result.timings
    assert list(dict.fromkeys(stages)) == ["window 1/3", "window 2/3", "window 3/3"]
    assert any("trimmed to 20" in note for note in result.notes)


def test_sana_wm_with_the_refiner_chains_windows_that_drop_their_anchor(
    short_sana_wm: Backend, astronaut: Image.Image
) -> None:
    """The refiner returns 8 of 9 frames, all new: nothing more is dropped at the joins, and 24 are cut to 20."""
    request = shot(
        astronaut,
        width=64,
        height=64,
        num_frames=20,
        steps=2,
        camera="w-8,none-11",
        refiner=RefinerSettings(enabled=True),
    )
    result = render_long(short_sana_wm, request)
    assert result.frames.shape == (20, 64, 64, 3)
    assert result.parameters["window_cameras"] == ["w-8", "none-8", "none-8"]
    assert [window["num_frames"] for window in result.parameters["window_parameters"]] == [8, 8, 8]
    assert any("final 4 frames were trimmed to 20" in note for note in result.notes)
    assert "refiner" in result.timings
