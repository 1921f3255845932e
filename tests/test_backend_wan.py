"""Wan image-to-video and VACE backends on tiny random model folders, with the video-to-video refiner.

The real loading code runs (``WanImageToVideoPipeline`` / ``WanVACEPipeline`` from folders written by
``save_pretrained``; the refiner's transformer from a Wan text-to-video folder) on CPU. The weights are random,
so only shapes, records, determinism and control flow mean anything. Each backend (with its own
:class:`PipelineCache`) is shared by the module so each pipeline loads once.
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import numpy as np
import pytest
from PIL import Image

from pipelines.backend import (
    CancelToken,
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    RefinerSettings,
    RequestError,
)
from pipelines.camera import PRESETS, parse_camera
from pipelines.loading import LoadSpec, PipelineCache
from pipelines.wan import WanI2VBackend, WanVACEBackend, camera_words, prompt_with_camera, vace_conditioning

HEIGHT, WIDTH = 32, 48
FPS = 8

Progress = list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> dict[str, Image.Image]:
    """Real photographs (scikit-image): astronaut and cat as first/last frames, coffee and rocket as references."""
    loaded = {}
    for name, path in photos.items():
        with Image.open(path) as image:
            loaded[name] = image.convert("RGB")
    return loaded


@pytest.fixture(scope="module")
def i2v(wan_folders: dict[str, Path]) -> WanI2VBackend:
    return WanI2VBackend(
        LoadSpec(source=str(wan_folders["wan-i2v"])),
        cache=PipelineCache(),
        refiner_spec=LoadSpec(source=str(wan_folders["wan-refiner"])),
    )


@pytest.fixture(scope="module")
def vace(wan_folders: dict[str, Path]) -> WanVACEBackend:
    return WanVACEBackend(
        LoadSpec(source=str(wan_folders["wan-vace"])),
        cache=PipelineCache(),
        refiner_spec=LoadSpec(source=str(wan_folders["wan-refiner"])),
    )


def request_for(keyframe: Image.Image | None, **fields: object) -> GenerationRequest:
    values: dict[str, object] = {
        "prompt": "an astronaut in a white suit walks through a garden",
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "num_frames": 5,
        "steps": 2,
        "seed": 3,
        "keyframe": keyframe,
        "camera": "pan-left",
    }
    values.update(fields)
    return GenerationRequest(**values)  # type: ignore[arg-type]


def quick(keyframe: Image.Image | None, **fields: object) -> GenerationRequest:
    """A cheaper request (one step, no classifier-free guidance) where only control flow is checked."""
    return request_for(keyframe, **({"steps": 1, "guidance": 1.0} | fields))


@pytest.fixture(scope="module")
def i2v_first(i2v: WanI2VBackend, images: dict[str, Image.Image]) -> GenerationResult:
    return i2v.generate(request_for(images["astronaut"]))


@pytest.fixture(scope="module")
def i2v_refined(i2v: WanI2VBackend, images: dict[str, Image.Image]) -> tuple[GenerationResult, Progress]:
    """The same request as ``i2v_first`` with the refiner on (4 steps at strength 0.5: 2 refiner steps)."""
    seen: Progress = []
    refiner = RefinerSettings(enabled=True, steps=4, strength=0.5)
    result = i2v.generate(request_for(images["astronaut"], refiner=refiner), progress=lambda *a: seen.append(a))
    return result, seen


def assert_frames(result: GenerationResult, frames: int = 5) -> None:
    assert result.frames.dtype == np.uint8
    assert result.frames.shape == (frames, HEIGHT, WIDTH, 3)
    assert len(np.unique(result.frames)) > 1, "the frames are one constant colour"


# Wan image-to-video.


def test_i2v_first_frame(i2v_first: GenerationResult, wan_folders: dict[str, Path]) -> None:
    result = i2v_first
    assert_frames(result)
    assert result.fps == FPS
    assert result.notes == ()
    parameters = result.parameters
    json.dumps(parameters)
    assert parameters["backend"] == "wan-i2v"
    assert "pans left" in parameters["model_prompt"]
    assert parameters["model_prompt"].startswith("an astronaut in a white suit walks through a garden. ")
    assert parameters["steps"] == 2
    assert parameters["seed"] == 3
    assert parameters["num_frames"] == 5
    assert parameters["keyframe"] == {"width": 128, "height": 128}
    assert parameters["last_frame"] is None
    provenance = parameters["provenance"]
    assert provenance["load_spec"]["dtype"] == "float32"
    assert provenance["load_spec"]["device"] == "cpu"
    assert provenance["model_folder"] == str(wan_folders["wan-i2v"].resolve())
    assert "transformer/diffusion_pytorch_model.safetensors" in provenance["model_files"]
    assert all(name.endswith(".safetensors") for name in provenance["model_files"])
    assert "backbone" in result.timings
    assert "refiner" not in result.timings
    assert result.peak_memory["process_rss_bytes"] > 0


def test_i2v_first_and_last_frame(
    i2v: WanI2VBackend, i2v_first: GenerationResult, images: dict[str, Image.Image]
) -> None:
    result = i2v.generate(request_for(images["astronaut"], last_frame=images["chelsea"]))
    assert_frames(result)
    assert result.parameters["last_frame"] is not None
    assert not np.array_equal(result.frames, i2v_first.frames), "the last frame changed nothing"


def test_i2v_action_string_is_described_in_the_prompt(i2v: WanI2VBackend, images: dict[str, Image.Image]) -> None:
    result = i2v.generate(quick(images["astronaut"], camera="w-4"))
    assert_frames(result)
    assert "moves forward" in result.parameters["model_prompt"]
    assert result.parameters["camera"] == "w-4"


def test_i2v_frame_count_is_snapped_with_a_note(i2v: WanI2VBackend, images: dict[str, Image.Image]) -> None:
    result = i2v.generate(quick(images["astronaut"], num_frames=6))
    assert_frames(result, frames=9)
    assert result.parameters["num_frames"] == 9
    assert len(result.notes) == 1
    assert "6 frames snapped to 9" in result.notes[0]


@pytest.mark.parametrize(
    ("backend_name", "fields", "message"),
    [
        ("wan-i2v", {"width": 40}, "multiple of 16"),
        ("wan-i2v", {"references": 1}, "takes no character reference images"),
        ("wan-i2v", {"keyframe": None}, "keyframe"),
        ("wan-vace", {"references": 5}, "at most 4 reference images, got 5"),
        ("wan-vace", {"camera": "w-3"}, "multiple of 4 steps"),
    ],
    ids=["i2v-width-40", "i2v-references", "i2v-no-keyframe", "vace-5-references", "vace-path-not-4k"],
)
def test_requests_they_cannot_honour_are_refused_before_loading(
    wan_folders: dict[str, Path],
    images: dict[str, Image.Image],
    backend_name: str,
    fields: dict[str, object],
    message: str,
) -> None:
    if "references" in fields:
        count = int(fields["references"])  # type: ignore[call-overload]
        fields = fields | {"references": tuple(images[name] for name in ("coffee", "rocket", "chelsea") * 2)[:count]}
    if fields.get("camera") == "w-3":
        fields = fields | {"num_frames": 4}
    cache = PipelineCache()
    backend_class = WanI2VBackend if backend_name == "wan-i2v" else WanVACEBackend
    fresh = backend_class(LoadSpec(source=str(wan_folders[backend_name])), cache=cache)
    with pytest.raises(RequestError, match=message):
        fresh.generate(request_for(**({"keyframe": images["astronaut"]} | fields)))  # type: ignore[arg-type]
    assert cache.loads == 0


# Wan VACE.


def test_vace_references_and_keyframe(vace: WanVACEBackend, images: dict[str, Image.Image]) -> None:
    references = (images["coffee"], images["rocket"])
    result = vace.generate(request_for(images["astronaut"], references=references))
    assert_frames(result)
    assert result.parameters["backend"] == "wan-vace"
    assert result.parameters["conditioned_frames"] == [0]
    assert len(result.parameters["references"]) == 2
    assert "pans left" in result.parameters["model_prompt"]


def test_vace_keyframe_and_last_frame(vace: WanVACEBackend, images: dict[str, Image.Image]) -> None:
    references = (images["coffee"], images["rocket"])
    result = vace.generate(
        quick(images["astronaut"], last_frame=images["chelsea"], references=references, camera="static")
    )
    assert_frames(result)
    assert result.parameters["conditioned_frames"] == [0, 4]
    assert "static camera" in result.parameters["model_prompt"].lower()


def test_vace_text_only_with_references(vace: WanVACEBackend, images: dict[str, Image.Image]) -> None:
    result = vace.generate(quick(None, references=(images["coffee"], images["rocket"])))
    assert_frames(result)
    assert result.parameters["conditioned_frames"] == []
    assert result.parameters["keyframe"] is None


def test_vace_conditioning_masks_keep_the_given_frames(images: dict[str, Image.Image]) -> None:
    references = (images["coffee"], images["rocket"])
    request = request_for(images["astronaut"], last_frame=images["chelsea"], references=references, num_frames=9)
    conditioning = vace_conditioning(request)
    assert set(conditioning) == {"reference_images", "video", "mask"}
    assert [image.size for image in conditioning["reference_images"]] == [image.size for image in references]
    assert all(image.mode == "RGB" for image in conditioning["reference_images"])
    video, mask = conditioning["video"], conditioning["mask"]
    assert len(video) == len(mask) == 9
    assert all(frame.size == (WIDTH, HEIGHT) for frame in video + mask)
    for index, frame_mask in enumerate(mask):
        values = np.asarray(frame_mask)
        assert values.shape == (HEIGHT, WIDTH)
        expected = 0 if index in (0, 8) else 255
        assert (values == expected).all(), f"mask {index} should be all {expected}"
    assert (np.asarray(video[4]) == 128).all()  # frames to generate are grey
    np.testing.assert_array_equal(
        np.asarray(video[0]), np.asarray(images["astronaut"].resize((WIDTH, HEIGHT), Image.LANCZOS))
    )

    first_only = vace_conditioning(request_for(images["astronaut"], num_frames=5))
    assert "reference_images" not in first_only
    assert len(first_only["video"]) == 5
    assert [int(np.asarray(m).max()) for m in first_only["mask"]] == [0, 255, 255, 255, 255]

    references_only = vace_conditioning(request_for(None, references=references))
    assert set(references_only) == {"reference_images"}
    assert references_only["reference_images"][0].size == references[0].size


# The video-to-video refiner.


def test_refiner_runs_after_the_backbone(
    i2v_refined: tuple[GenerationResult, Progress], i2v_first: GenerationResult
) -> None:
    result, seen = i2v_refined
    assert_frames(result)
    assert {"backbone", "refiner"} <= set(result.timings)
    assert result.parameters["refiner"] == {"enabled": True, "steps": 4, "strength": 0.5}
    assert [step for stage, step, _ in seen if stage == "backbone"] == [1, 2]
    assert [(step, total) for stage, step, total in seen if stage == "refiner"] == [(1, 2), (2, 2)]
    assert not np.array_equal(result.frames, i2v_first.frames), "the refiner changed nothing"
    # The refiner's record is the spec it was loaded with on this machine, as the backbone's is: no "auto" left.
    refiner_spec = result.parameters["provenance"]["refiner"]["load_spec"]
    backbone_spec = result.parameters["provenance"]["load_spec"]
    assert "auto" not in (refiner_spec["device"], refiner_spec["dtype"], refiner_spec["offload"]), refiner_spec
    assert (refiner_spec["device"], refiner_spec["dtype"]) == (backbone_spec["device"], backbone_spec["dtype"])


def test_refiner_on_vace(vace: WanVACEBackend, images: dict[str, Image.Image]) -> None:
    refiner = RefinerSettings(enabled=True, steps=2, strength=0.5)
    result = vace.generate(quick(images["astronaut"], references=(images["coffee"],), refiner=refiner))
    assert_frames(result)
    assert "refiner" in result.timings


def test_refiner_that_would_run_zero_steps_is_refused(i2v: WanI2VBackend, images: dict[str, Image.Image]) -> None:
    refiner = RefinerSettings(enabled=True, steps=2, strength=0.3)
    with pytest.raises(RequestError, match=r"2 x 0\.3 = 0 steps; raise its steps to at least 4"):
        i2v.generate(quick(images["astronaut"], refiner=refiner))


def test_refiner_without_weights_names_the_setting(
    wan_folders: dict[str, Path], i2v: WanI2VBackend, images: dict[str, Image.Image]
) -> None:
    without = WanI2VBackend(LoadSpec(source=str(wan_folders["wan-i2v"])), cache=i2v.cache)
    with pytest.raises(RequestError, match="CONTINUITY_MODEL_WAN_REFINER"):
        without.generate(quick(images["astronaut"], refiner=RefinerSettings(enabled=True)))


# Seeds, cancel, caching.


def test_same_seed_same_frames_other_seed_other_frames(
    i2v: WanI2VBackend, i2v_first: GenerationResult, images: dict[str, Image.Image]
) -> None:
    again = i2v.generate(request_for(images["astronaut"]))
    np.testing.assert_array_equal(again.frames, i2v_first.frames)
    other = i2v.generate(request_for(images["astronaut"], seed=4))
    assert not np.array_equal(other.frames, i2v_first.frames)


def test_cancel_stops_early(vace: WanVACEBackend, images: dict[str, Image.Image]) -> None:
    token = CancelToken()
    seen: Progress = []

    def progress(stage: str, step: int, total: int) -> None:
        seen.append((stage, step, total))
        if stage == "backbone" and step == 1:
            token.cancel()

    with pytest.raises(GenerationCancelled):
        vace.generate(quick(images["astronaut"], steps=4), progress=progress, cancel=token)
    assert [step for stage, step, _ in seen if stage == "backbone"] == [1]


def test_cancel_stops_i2v_early(i2v: WanI2VBackend, images: dict[str, Image.Image]) -> None:
    token = CancelToken()
    seen: Progress = []

    def progress(stage: str, step: int, total: int) -> None:
        seen.append((stage, step, total))
        if step == 1:
            token.cancel()

    with pytest.raises(GenerationCancelled):
        i2v.generate(quick(images["astronaut"], steps=4), progress=progress, cancel=token)
    assert len([stage for stage, _, _ in seen if stage == "backbone"]) < 4


def test_pipeline_loads_once_for_two_takes(wan_folders: dict[str, Path], images: dict[str, Image.Image]) -> None:
    cache = PipelineCache()
    fresh = WanI2VBackend(LoadSpec(source=str(wan_folders["wan-i2v"])), cache=cache)
    fresh.generate(quick(images["astronaut"]))
    fresh.generate(quick(images["astronaut"], seed=9, camera="dolly-in"))
    assert cache.loads == 1


# Camera words.


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_has_camera_words(preset: str) -> None:
    words = camera_words(parse_camera(preset))
    assert words.strip()
    assert words == words.strip()
    prompt = prompt_with_camera("A cat on a sofa.", preset)
    assert prompt == f"A cat on a sofa. {words.capitalize()}."


def test_camera_words_for_an_action_string() -> None:
    words = camera_words(parse_camera("w-4,none-4,jl-4"))
    assert words == "the camera moves forward, then holds still, then pans left and pans right"
    assert camera_words(parse_camera("w-4,w-4")) == "the camera moves forward"


# Regressions: each of these was a bug once.


@pytest.mark.parametrize(
    ("refiner", "with_weights"),
    [
        (RefinerSettings(enabled=True, steps=2, strength=0.3), True),
        (RefinerSettings(enabled=True, strength=1.5), True),
        (RefinerSettings(enabled=True), False),
    ],
    ids=["zero-steps", "strength-1.5", "no-refiner-weights"],
)
def test_refiner_problems_are_refused_before_loading(
    wan_folders: dict[str, Path], images: dict[str, Image.Image], refiner: RefinerSettings, with_weights: bool
) -> None:
    refiner_spec = LoadSpec(source=str(wan_folders["wan-refiner"])) if with_weights else None
    cache = PipelineCache()
    backend = WanI2VBackend(LoadSpec(source=str(wan_folders["wan-i2v"])), cache=cache, refiner_spec=refiner_spec)
    with pytest.raises(RequestError, match="refiner"):
        backend.generate(request_for(images["astronaut"], refiner=refiner))
    assert cache.loads == 0


def test_vace_with_nothing_to_go_on_is_refused() -> None:
    backend = WanVACEBackend(LoadSpec(source="/nonexistent/wan-vace"), cache=PipelineCache())
    with pytest.raises(RequestError, match="prompt"):
        backend.check_request(request_for(None, prompt=""))


def test_a_refined_take_records_the_refiner_weights(
    i2v_refined: tuple[GenerationResult, Progress], wan_folders: dict[str, Path]
) -> None:
    result, _ = i2v_refined
    recorded = json.dumps(result.parameters["provenance"])
    assert str(wan_folders["wan-refiner"]) in recorded or str(wan_folders["wan-refiner"].resolve()) in recorded


def test_the_refiner_prints_no_progress_bar(
    i2v: WanI2VBackend, images: dict[str, Image.Image], capfd: pytest.CaptureFixture[str]
) -> None:
    i2v.generate(quick(images["astronaut"], refiner=RefinerSettings(enabled=True, steps=2, strength=0.5)))
    assert "it/s]" not in capfd.readouterr().err


def test_the_refiner_uses_the_requested_guidance(
    i2v: WanI2VBackend, images: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[float] = []
    real_call = diffusers.WanVideoToVideoPipeline.__call__

    def spy(self: object, *args: object, **kwargs: object) -> object:
        used.append(kwargs["guidance_scale"])  # type: ignore[arg-type]
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.WanVideoToVideoPipeline, "__call__", spy)
    refiner = RefinerSettings(enabled=True, steps=2, strength=0.5)
    result = i2v.generate(quick(images["astronaut"], guidance=0.0, refiner=refiner))
    assert result.parameters["guidance"] == 0.0
    assert used == [0.0]
