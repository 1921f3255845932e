"""pipelines.consistency on takes the real animatic backend renders from real photographs.

The character is the astronaut of scikit-image's photographs (her photo is her reference); a take rendered from
her photo must score higher for look than a take rendered from the coffee cup or the rocket; a smooth dolly-in
must be more stable than the same frames shuffled or blended with noise; and a take that starts on the previous
take's last frame must continue it better than one that starts on another photograph. All with the offline
embedder, which needs no weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.animatic import AnimaticBackend
from pipelines.backend import GenerationRequest
from pipelines.consistency import LookScore, continuity, look, sample_frames, stability
from pipelines.embedders import OfflineEmbedder

WIDTH, HEIGHT, FPS, FRAMES = 128, 96, 8, 25


@pytest.fixture(scope="module")
def embedder() -> OfflineEmbedder:
    return OfflineEmbedder()


@pytest.fixture(scope="module")
def pictures(photos: dict[str, Path]) -> dict[str, Image.Image]:
    """The conftest photographs (128 px files: PNG, JPEG, WebP), opened as a user's uploads are."""
    return {name: Image.open(path).convert("RGB") for name, path in photos.items()}


def render(
    keyframe: Image.Image,
    *,
    camera: str = "dolly-in",
    seed: int = 0,
    frames: int = FRAMES,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    fps: int = FPS,
) -> np.ndarray:
    """A take of ``keyframe`` by the real animatic backend."""
    request = GenerationRequest(
        prompt="a shot",
        width=size[0],
        height=size[1],
        fps=fps,
        num_frames=frames,
        keyframe=keyframe,
        camera=camera,
        seed=seed,
    )
    return AnimaticBackend().generate(request).frames


@pytest.fixture(scope="module")
def takes(pictures: dict[str, Image.Image]) -> dict[str, np.ndarray]:
    """A dolly-in take from each photograph."""
    return {name: render(picture) for name, picture in pictures.items()}


def two_shot(left: Image.Image, right: Image.Image) -> Image.Image:
    """Two photographs side by side, each cut to its centre: a keyframe with two subjects."""
    frame = Image.new("RGB", (256, 192))
    for index, picture in enumerate((left, right)):
        side = min(picture.size)
        square = picture.crop(
            ((picture.width - side) // 2, (picture.height - side) // 2, (picture.width + side) // 2, side)
        )
        half = square.resize((192, 192)).crop((32, 0, 160, 192))
        frame.paste(half, (128 * index, 0))
    return frame


# Sampling.


def test_sample_frames_spreads_evenly_and_keeps_both_ends() -> None:
    assert sample_frames(np.zeros((33, 2, 2, 3), np.uint8), 8) == [0, 5, 9, 14, 18, 23, 27, 32]
    assert sample_frames(25, 8)[0] == 0 and sample_frames(25, 8)[-1] == 24
    assert sample_frames(5, 8) == [0, 1, 2, 3, 4]
    assert sample_frames(1) == [0]
    steps = np.diff(sample_frames(97, 8))
    assert steps.max() - steps.min() <= 1
    with pytest.raises(ValueError, match="no frames"):
        sample_frames(0)


def test_frames_must_be_uint8_video(embedder: OfflineEmbedder) -> None:
    with pytest.raises(ValueError, match="uint8"):
        stability(np.zeros((4, 8, 8, 3), np.float32), embedder)
    with pytest.raises(ValueError, match="uint8"):
        stability(np.zeros((8, 8, 3), np.uint8), embedder)


# Look (the descriptor's view of the characters).


def test_look_prefers_the_take_of_the_character(
    takes: dict[str, np.ndarray], pictures: dict[str, Image.Image], embedder: OfflineEmbedder
) -> None:
    cast = {"Astronaut": [pictures["astronaut"]]}
    own = look(takes["astronaut"], cast, embedder)
    assert isinstance(own, LookScore)
    assert own.embedder == embedder.id and own.frames_scored == 8
    assert own.frames_with_faces >= 2  # her face is found until the dolly pushes it out of the top of the frame
    assert 0.0 <= own.value <= 1.0 and own.per_character == {"Astronaut": own.value}
    for other in ("coffee", "rocket"):
        score = look(takes[other], cast, embedder)
        assert score.frames_with_faces == 0
        assert own.value > score.value + 0.15, (other, own.value, score.value)


def test_look_with_two_characters(pictures: dict[str, Image.Image], embedder: OfflineEmbedder) -> None:
    cast = {"Astronaut": [pictures["astronaut"]], "Cat": [pictures["chelsea"]]}
    both = look(render(two_shot(pictures["astronaut"], pictures["chelsea"])), cast, embedder)
    neither = look(render(two_shot(pictures["coffee"], pictures["rocket"])), cast, embedder)
    assert set(both.per_character) == {"Astronaut", "Cat"}
    assert both.value == pytest.approx(np.mean(list(both.per_character.values())))
    for name in cast:
        assert both.per_character[name] > neither.per_character[name], name
    assert both.value > neither.value + 0.1


def test_look_asks_for_references(takes: dict[str, np.ndarray], embedder: OfflineEmbedder) -> None:
    with pytest.raises(ValueError, match="'Mara' has no reference images"):
        look(takes["astronaut"], {"Mara": []}, embedder)
    with pytest.raises(ValueError, match="at least one character"):
        look(takes["astronaut"], {}, embedder)


# Stability.


def test_a_smooth_dolly_is_more_stable_than_shuffled_or_noisy_frames(
    takes: dict[str, np.ndarray], embedder: OfflineEmbedder
) -> None:
    rng = np.random.default_rng(0)
    for name in ("astronaut", "coffee", "rocket"):
        frames = takes[name]
        smooth = stability(frames, embedder)
        shuffled = stability(frames[rng.permutation(len(frames))], embedder)
        noisy_frames = frames.copy()
        noise = rng.integers(0, 256, size=frames[1::2].shape, dtype=np.uint8)
        noisy_frames[1::2] = (0.5 * frames[1::2] + 0.5 * noise).astype(np.uint8)
        noisy = stability(noisy_frames, embedder)
        assert smooth.embedder == embedder.id and smooth.frames_scored == min(FRAMES, 16)
        assert smooth.value == pytest.approx((smooth.subject + smooth.background + smooth.flicker) / 3)
        assert smooth.value > 0.95, name
        # Shuffling is caught by flickering: VBench's consistency compares each frame with the first, and a
        # shuffled take's first frame sits mid-dolly, nearer the rest than the widest frame is (on the plain sky
        # of the rocket the embedding parts even rise a little).
        assert smooth.value > shuffled.value and smooth.flicker > shuffled.flicker, name
        assert smooth.value > noisy.value + 0.1, name
        assert smooth.subject > noisy.subject and smooth.background > noisy.background, name


def test_a_still_take_is_perfectly_stable(pictures: dict[str, Image.Image], embedder: OfflineEmbedder) -> None:
    still = np.stack([np.asarray(pictures["chelsea"].resize((WIDTH, HEIGHT)))] * 6)
    score = stability(still, embedder)
    assert score.value == pytest.approx(1.0, abs=1e-5)
    assert stability(still[:1], embedder).value == 1.0


def test_a_flash_frame_lowers_stability(takes: dict[str, np.ndarray], embedder: OfflineEmbedder) -> None:
    frames = takes["chelsea"].copy()
    smooth = stability(frames, embedder)
    frames[12] = 255 - frames[12]
    flashed = stability(frames, embedder)
    assert flashed.flicker < smooth.flicker and flashed.value < smooth.value


# Continuity.


def test_a_take_chained_from_the_last_frame_continues_it(
    takes: dict[str, np.ndarray], pictures: dict[str, Image.Image], embedder: OfflineEmbedder
) -> None:
    for name, unrelated in (("astronaut", "coffee"), ("chelsea", "rocket"), ("coffee", "astronaut")):
        last = takes[name][-1]
        chained = render(Image.fromarray(last), camera="pan-left", seed=1)
        elsewhere = render(pictures[unrelated], camera="pan-left", seed=1)
        restarted = render(pictures[name], camera="pan-left", seed=1)  # same subject, but the framing jumps back
        joined = continuity(chained[:3], last, embedder)
        assert joined > 0.9, name
        assert joined > continuity(restarted[:3], last, embedder) > continuity(elsewhere[:3], last, embedder), name
        assert joined > continuity(elsewhere[:3], last, embedder) + 0.4, name


def test_continuity_compares_frames_of_another_size(takes: dict[str, np.ndarray], embedder: OfflineEmbedder) -> None:
    last = takes["rocket"][-1]
    larger = np.asarray(Image.fromarray(last).resize((WIDTH * 2, HEIGHT * 2), Image.Resampling.BICUBIC))
    same = continuity(takes["rocket"][-1:], larger, embedder)
    assert same > 0.9
    assert continuity(takes["rocket"][-1:], last, embedder) == pytest.approx(1.0, abs=1e-5)
    assert continuity(takes["coffee"][:3], larger, embedder) < same - 0.4
