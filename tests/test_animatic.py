"""The animatic backend and the request checks every backend shares, on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.animatic import AnimaticBackend
from pipelines.backend import CancelToken, GenerationCancelled, GenerationRequest, RefinerSettings, RequestError
from pipelines.camera import PRESETS


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def request(keyframe: Image.Image | None, **changes: object) -> GenerationRequest:
    values: dict[str, object] = {
        "prompt": "Mara climbs the stairs",
        "width": 128,
        "height": 80,
        "fps": 8,
        "num_frames": 17,
        "seed": 1,
        "keyframe": keyframe,
    }
    return GenerationRequest(**(values | changes))


def test_frames_have_the_requested_shape_and_start_on_the_keyframe(astronaut: Image.Image) -> None:
    result = AnimaticBackend().generate(request(astronaut, camera="static", seed=0))
    assert result.frames.shape == (17, 80, 128, 3) and result.frames.dtype == np.uint8
    assert result.fps == 8 and result.num_frames == 17
    # The first frame is the keyframe, cropped to cover 128x80: compare with a plain cover-crop of the photo.
    first = result.frames[0].astype(np.float32)
    assert first.std() > 20  # a photograph, not a blank frame
    mean_photo = np.asarray(astronaut, dtype=np.float32).mean(axis=(0, 1))
    assert np.abs(first.mean(axis=(0, 1)) - mean_photo).max() < 40


def test_dolly_in_magnifies_and_pan_moves_sideways(astronaut: Image.Image) -> None:
    backend = AnimaticBackend()
    static = backend.generate(request(astronaut, camera="static", num_frames=33)).frames
    dolly = backend.generate(request(astronaut, camera="dolly-in", num_frames=33)).frames
    pan = backend.generate(request(astronaut, camera="pan-right", num_frames=33)).frames
    assert np.array_equal(static[0], dolly[0])  # same seed, same first frame
    # A static shot barely changes (hand-held sway only); a dolly or a pan changes the picture a lot more.
    drift = np.abs(static[-1].astype(int) - static[0].astype(int)).mean()
    assert np.abs(dolly[-1].astype(int) - dolly[0].astype(int)).mean() > 3 * drift
    assert np.abs(pan[-1].astype(int) - pan[0].astype(int)).mean() > 3 * drift
    # Panning right shows what was right of the first frame: the last frame's left edge is the first frame's
    # content shifted left, which correlates better than the unshifted frame does.
    shift = 128 * 0.004 * 32 * 1.15  # pan speed x steps, in output pixels at the starting zoom
    cut = round(shift / 1.15)
    shifted = np.corrcoef(pan[0][:, cut:].ravel(), pan[-1][:, : 128 - cut].ravel())[0, 1]
    unshifted = np.corrcoef(pan[0].ravel(), pan[-1].ravel())[0, 1]
    assert shifted > unshifted


@pytest.mark.parametrize("camera", sorted(PRESETS))
def test_every_preset_renders_without_borders(astronaut: Image.Image, camera: str) -> None:
    frames = AnimaticBackend().generate(request(astronaut, camera=camera, num_frames=65)).frames
    assert frames.shape[0] == 65
    # The view is kept inside the photo: no frame has a black border column or row.
    for frame in frames[::16]:
        assert frame[:, 0].max() > 0 and frame[:, -1].max() > 0
        assert frame[0].max() > 0 and frame[-1].max() > 0


def test_action_string_follows_its_segments(astronaut: Image.Image) -> None:
    frames = AnimaticBackend().generate(request(astronaut, camera="w-8,none-8", num_frames=17)).frames
    moving = np.abs(frames[8].astype(int) - frames[0].astype(int)).mean()
    holding = np.abs(frames[16].astype(int) - frames[8].astype(int)).mean()
    assert moving > 2 * holding


def test_same_seed_same_frames_other_seed_other_take(astronaut: Image.Image) -> None:
    backend = AnimaticBackend()
    one = backend.generate(request(astronaut, seed=5)).frames
    again = backend.generate(request(astronaut, seed=5)).frames
    other = backend.generate(request(astronaut, seed=6)).frames
    assert np.array_equal(one, again)
    assert not np.array_equal(one, other)


def test_caption_is_drawn_and_text_only_shots_get_a_title_card(astronaut: Image.Image) -> None:
    backend = AnimaticBackend()
    plain = backend.generate(request(astronaut)).frames
    captioned = backend.generate(request(astronaut, caption="Arrival")).frames
    differs = np.abs(plain[0].astype(int) - captioned[0].astype(int)).sum(axis=2) > 0
    rows = np.nonzero(differs.any(axis=1))[0]
    assert rows.size and rows.min() > 80 // 2  # the caption sits in the lower half
    card = backend.generate(request(None, prompt="The sea at night")).frames
    assert card.shape == (17, 80, 128, 3) and card[0].std() > 1


def test_cancel_stops_before_the_end(astronaut: Image.Image) -> None:
    cancel = CancelToken()
    seen: list[int] = []

    def progress(stage: str, step: int, total: int) -> None:
        seen.append(step)
        if step >= 9:
            cancel.cancel()

    with pytest.raises(GenerationCancelled, match="cancelled after"):
        AnimaticBackend().generate(request(astronaut, num_frames=200), progress=progress, cancel=cancel)
    assert max(seen) < 200


def test_result_records_the_parameters_used(astronaut: Image.Image) -> None:
    astronaut.info["sha256"] = "ab" * 32
    result = AnimaticBackend().generate(request(astronaut, camera="Dolly-In", negative_prompt="blur"))
    params = result.parameters
    assert params["backend"] == "animatic" and params["camera"] == "Dolly-In"
    assert params["camera_steps"] == 16 and params["num_frames"] == 17
    assert params["keyframe"] == {"width": 512, "height": 512, "sha256": "ab" * 32}
    assert params["negative_prompt"] == "blur" and result.timings["render"] > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 100}, "multiple of 8"),
        ({"height": 12}, "multiple of 8"),
        ({"fps": 0}, "fps"),
        ({"num_frames": 1}, "at least 2 frames"),
        ({"num_frames": 482}, "more than Animatic renders in one pass"),
        ({"camera": "fly-8"}, "unknown keys"),
        ({"camera": "w-8"}, "8 steps but the shot has 17 frames"),
        ({"refiner": RefinerSettings(enabled=True)}, "no refiner"),
        ({"steps": 0}, "steps"),
        ({"last_frame": Image.new("RGB", (8, 8))}, "last frame"),
        ({"references": (Image.new("RGB", (8, 8)),)}, "no character reference"),
    ],
)
def test_requests_the_backend_cannot_honour_are_refused(
    astronaut: Image.Image, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(RequestError, match=message):
        AnimaticBackend().generate(request(astronaut, **changes))


def test_for_duration_counts_frames() -> None:
    made = GenerationRequest.for_duration(2.5, 16, prompt="p", width=64, height=64)
    assert made.num_frames == 40 and made.duration == pytest.approx(2.5)
    assert GenerationRequest.for_duration(0.01, 16, prompt="p", width=64, height=64).num_frames == 2
