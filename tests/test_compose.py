"""The compose keyframe backend on real photographs: the people it lays out are found again and recognised.

The characters are public-domain photographs of real people (``tests/photos/``, see its README) and scikit-image's
cat and astronaut; the locations are scikit-image's rocket and coffee. Faces in the composed pictures are found
and compared by the studio's own face recognizer (dlib), with the references given to compose or other photographs
of the same people.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from pipelines import compose
from pipelines.backend import CancelToken, GenerationCancelled, RequestError
from pipelines.compose import ComposeBackend
from pipelines.consistency import identity, look
from pipelines.embedders import OfflineEmbedder
from pipelines.faces import (
    DOUBT_SCORE,
    SAME,
    SURE_SCORE,
    Face,
    FaceRecognizer,
    FaceRecognizerMissing,
    distance,
    load_face_recognizer,
    same_person,
)
from pipelines.keyframes import PictureRequest, Subject
from pipelines.registry import create_picture_backend, describe

PHOTOS = Path(__file__).parent / "photos"
WIDTH, HEIGHT = 640, 384  # the studio's default project size


def photo(name: str) -> Image.Image:
    return Image.open(PHOTOS / f"{name}.jpg").convert("RGB")


@pytest.fixture(scope="module")
def recognizer() -> FaceRecognizer:
    return load_face_recognizer()


@pytest.fixture(scope="module")
def people(recognizer: FaceRecognizer) -> dict[str, np.ndarray]:
    """Each photograph's face descriptor, to tell who a composed face is."""
    return {
        name: recognizer.faces(photo(name))[0].descriptor
        for name in ("obama-1", "obama-2", "obama-3", "biden-1", "hopper-1")
    }


@pytest.fixture(scope="module")
def rocket() -> Image.Image:
    return Image.fromarray(data.rocket())


def person(name: str, *photos: str) -> Subject:
    return Subject(name, f"{name}, as in the photographs", tuple(photo(p) for p in photos))


def request(*subjects: Subject, **changes: object) -> PictureRequest:
    values: dict[str, object] = {"prompt": "they meet at the launch pad", "width": WIDTH, "height": HEIGHT, "seed": 0}
    return PictureRequest(subjects=subjects, **(values | changes))


def faces_left_to_right(recognizer: FaceRecognizer, image: Image.Image) -> list[Face]:
    return sorted(recognizer.faces(image), key=lambda face: face.box[0])


def score(face: Face, reference: np.ndarray) -> float:
    return same_person(distance(face.descriptor, reference))


def cover_fit(scene: Image.Image, width: int, height: int) -> np.ndarray:
    cover = max(width / scene.width, height / scene.height)
    size = (round(scene.width * cover), round(scene.height * cover))
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    fitted = scene.resize(size, Image.Resampling.LANCZOS).crop((left, top, left + width, top + height))
    return np.asarray(fitted, dtype=np.float32)


def test_one_character_with_no_scene_stands_centred_on_a_plain_backdrop(recognizer: FaceRecognizer) -> None:
    result = ComposeBackend().draw(request(person("Barack", "obama-1")))
    assert result.image.mode == "RGB" and result.image.size == (WIDTH, HEIGHT)
    [placed] = result.parameters["placements"]
    assert placed["name"] == "Barack" and placed["cut"] == "face" and placed["reference_index"] == 0
    x, y, w, h = placed["box"]
    assert y + h == HEIGHT  # a head-and-shoulders cut stands on the frame's bottom edge
    assert abs(x + w / 2 - WIDTH / 2) < 0.1 * WIDTH and h > 0.6 * HEIGHT
    [face] = recognizer.faces(result.image)
    assert score(face, recognizer.faces(photo("obama-2"))[0].descriptor) >= SURE_SCORE  # another photo of him
    # The backdrop is a soft gradient: smooth along the top, lighter above than below the figure's sides.
    pixels = np.asarray(result.image, dtype=np.float32)
    assert pixels[:8].std(axis=(0, 1)).max() < 12
    assert pixels[:8, :40].mean() > pixels[-8:, :40].mean()
    assert result.parameters["backend"] == "compose" and result.parameters["prompt"] == "they meet at the launch pad"
    assert any("reframes" in note for note in result.notes)


def test_two_characters_over_a_location_are_recognised_left_to_right(
    recognizer: FaceRecognizer, people: dict[str, np.ndarray], rocket: Image.Image
) -> None:
    shot = request(
        person("Barack", "obama-1"), person("Grace", "hopper-1"), scene=rocket, scene_kind="location", seed=3
    )
    result = ComposeBackend().draw(shot)
    assert result.image.size == (WIDTH, HEIGHT)
    placements = result.parameters["placements"]
    assert [p["name"] for p in placements] == ["Barack", "Grace"]
    assert placements[0]["face"][0] < WIDTH / 2 < placements[1]["face"][0]
    left, right = faces_left_to_right(recognizer, result.image)
    # Each face found is the right person: the same as another photograph of him, not her, and the other way round.
    assert score(left, people["obama-3"]) >= SURE_SCORE and score(left, people["hopper-1"]) <= DOUBT_SCORE
    assert score(right, people["hopper-1"]) >= SURE_SCORE and score(right, people["obama-2"]) <= DOUBT_SCORE
    # ... where the placements say they are.
    for found, placed in zip((left, right), placements, strict=True):
        fx, fy, fw, _ = placed["face"]
        assert abs(found.box[0] + found.box[2] / 2 - (fx + fw / 2)) < 0.3 * fw
        assert abs(found.box[1] - fy) < 0.4 * fw
    # The location shows round them: the top corners are the rocket's, softened a touch.
    pixels, scene = np.asarray(result.image, dtype=np.float32), cover_fit(rocket, WIDTH, HEIGHT)
    for corner in (np.s_[:40, :40], np.s_[:40, -40:]):
        assert np.abs(pixels[corner] - scene[corner]).mean() < 8
    assert result.parameters["scene"] == {"width": rocket.width, "height": rocket.height}


def test_the_identity_score_of_a_composed_two_shot_reads_same_person(
    recognizer: FaceRecognizer, rocket: Image.Image
) -> None:
    result = ComposeBackend().draw(
        request(person("Barack", "obama-1"), person("Grace", "hopper-1"), scene=rocket, scene_kind="location")
    )
    frames = np.asarray(result.image)[None]
    cast = {"Barack": [photo("obama-2")], "Grace": [photo("hopper-1")]}  # his score is against another photo
    scored = identity(frames, cast, recognizer, look(frames, cast, OfflineEmbedder()), fps=16)
    assert {name: part["verdict"] for name, part in scored.characters.items()} == {"Barack": SAME, "Grace": SAME}
    assert min(scored.per_character.values()) > 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_three_characters_at_the_default_size_all_show_recognisable_faces(
    recognizer: FaceRecognizer, people: dict[str, np.ndarray], seed: int
) -> None:
    cast = (person("Barack", "obama-2"), person("Grace", "hopper-1"), person("Joe", "biden-1"))
    result = ComposeBackend().draw(
        request(*cast, scene=Image.fromarray(data.coffee()), scene_kind="location", seed=seed)
    )
    found = faces_left_to_right(recognizer, result.image)
    assert len(found) == 3
    for face, who in zip(found, ("obama-1", "hopper-1", "biden-1"), strict=True):
        others = [name for name in people if name[:3] != who[:3]]
        assert score(face, people[who]) >= SURE_SCORE and max(score(face, people[o]) for o in others) <= DOUBT_SCORE
    boxes = [p["box"] for p in result.parameters["placements"]]
    assert all(x >= 0 and y >= 0 and x + w <= WIDTH and y + h <= HEIGHT for x, y, w, h in boxes)


def test_the_same_seed_gives_the_same_pixels_and_another_seed_another_candidate(rocket: Image.Image) -> None:
    cast = (person("Barack", "obama-1", "obama-2", "obama-3"), person("Grace", "hopper-1"))
    backend = ComposeBackend()
    first = backend.draw(request(*cast, scene=rocket, scene_kind="location", seed=7))
    # Again from the cut-outs the backend remembers, and from a fresh backend that cuts them out anew.
    again = backend.draw(request(*cast, scene=rocket, scene_kind="location", seed=7))
    fresh = ComposeBackend().draw(request(*cast, scene=rocket, scene_kind="location", seed=7))
    other = backend.draw(request(*cast, scene=rocket, scene_kind="location", seed=8))
    assert first.image.tobytes() == again.image.tobytes() == fresh.image.tobytes()
    assert first.parameters["placements"] == fresh.parameters["placements"]
    assert first.image.tobytes() != other.image.tobytes()
    assert first.parameters["placements"] != other.parameters["placements"]
    # The seed picks among a character's references.
    picked = {
        backend.draw(request(cast[0], seed=seed)).parameters["placements"][0]["reference_index"] for seed in range(6)
    }
    assert len(picked) > 1 and picked <= {0, 1, 2}


def test_a_character_with_no_face_is_cut_out_as_a_subject(recognizer: FaceRecognizer) -> None:
    cat = Subject("Chelsea", "a tabby cat", (Image.fromarray(data.chelsea()),))
    result = ComposeBackend().draw(request(person("Barack", "obama-1"), cat))
    barack, chelsea = result.parameters["placements"]
    assert barack["cut"] == "face" and chelsea["cut"] == "subject"
    x, y, w, h = chelsea["box"]
    assert x >= WIDTH / 2 and x + w <= WIDTH and y + h <= HEIGHT
    assert any("Chelsea" in note and "no face" in note for note in result.notes)
    # The cat shows where it was placed: its middle is the cat's orange fur, not the grey-blue backdrop.
    middle = np.asarray(result.image, dtype=np.float32)[y + h // 3 : y + 2 * h // 3, x + w // 3 : x + 2 * w // 3]
    red, _, blue = middle.reshape(-1, 3).mean(axis=0)
    assert red > blue + 20
    assert len(recognizer.faces(result.image)) == 1  # the man's face, and no other


def test_a_reference_with_nothing_to_cut_out_is_laid_whole_with_a_soft_edge() -> None:
    card = Subject("Card", "a plain grey card", (Image.new("RGB", (200, 300), (90, 140, 200)),))
    result = ComposeBackend().draw(request(card, seed=2))
    [placed] = result.parameters["placements"]
    assert placed["cut"] == "whole"
    x, y, w, h = placed["box"]
    pixels = np.asarray(result.image, dtype=np.float32)
    centre = pixels[y + h // 2, x + w // 2]
    assert np.abs(centre - (90, 140, 200)).max() < 30  # the card itself, tinted a little towards the scene
    edge = pixels[y + h // 2, x + 1]
    assert np.abs(edge - centre).max() > 20  # faded into the backdrop, not a hard rectangle


def test_a_previous_keyframe_is_kept_sharp_and_a_scene_alone_is_drawn() -> None:
    scene = Image.fromarray(data.coffee())
    alone = ComposeBackend().draw(request(scene=scene, scene_kind="previous keyframe"))
    assert alone.parameters["placements"] == []
    assert np.abs(np.asarray(alone.image, dtype=np.float32) - cover_fit(scene, WIDTH, HEIGHT)).max() <= 1


def test_front_view_centres_the_head_and_shoulders_on_a_plain_sheet(recognizer: FaceRecognizer) -> None:
    result = ComposeBackend().draw(request(person("Grace", "hopper-1"), view="front", width=512, height=512))
    [placed] = result.parameters["placements"]
    assert placed["cut"] == "face"
    [face] = recognizer.faces(result.image)
    assert abs(face.box[0] + face.box[2] / 2 - 256) < 20 and face.box[2] > 100
    corner = np.asarray(result.image, dtype=np.float32)[:20, :20].reshape(-1, 3)
    assert np.ptp(corner.mean(axis=0)) < 2 and corner.mean() > 180  # light grey
    full = ComposeBackend().draw(request(person("Grace", "hopper-1"), view="full-figure", width=384, height=512))
    [figure] = full.parameters["placements"]
    assert figure["cut"] == "subject"
    x, y, w, h = figure["box"]
    assert abs(x + w / 2 - 192) < 0.1 * 384
    assert y > 0 and y + h < 512 and h < 0.8 * 512  # smaller, and whole within the frame


@pytest.mark.parametrize("view", ["profile", "three-quarter"])
def test_views_that_turn_a_head_are_refused_with_the_edit_models_named(view: str) -> None:
    with pytest.raises(RequestError, match="qwen-image-edit or flux2-klein") as refused:
        ComposeBackend().draw(request(person("Grace", "hopper-1"), view=view))
    assert view in str(refused.value) and "cannot turn a head" in str(refused.value)


def test_cancel_from_the_progress_callback_stops_before_the_next_character() -> None:
    token = CancelToken()
    reported: list[tuple[str, int, int]] = []

    def progress(stage: str, step: int, total: int) -> None:
        reported.append((stage, step, total))
        token.cancel()

    cast = (person("Barack", "obama-1"), person("Grace", "hopper-1"), person("Joe", "biden-1"))
    with pytest.raises(GenerationCancelled, match="after 1 of 3"):
        ComposeBackend().draw(request(*cast), progress=progress, cancel=token)
    assert reported == [("keyframe", 1, 3)]
    steps: list[tuple[str, int, int]] = []
    ComposeBackend().draw(request(*cast[:2]), progress=lambda *step: steps.append(step))
    assert steps == [("keyframe", 1, 2), ("keyframe", 2, 2)]


def test_requests_it_cannot_draw_are_refused_before_drawing() -> None:
    with pytest.raises(RequestError, match="characters with references or a scene"):
        ComposeBackend().draw(request())
    with pytest.raises(RequestError, match="none of the shot's characters has a reference"):
        ComposeBackend().draw(request(Subject("Nobody", "", ())))
    with pytest.raises(RequestError, match="at most 8 pictures"):
        ComposeBackend().draw(request(*[person(f"Extra {n}", "biden-1") for n in range(8)], scene=photo("obama-1")))
    with pytest.raises(RequestError, match="multiple of 8"):
        ComposeBackend().draw(request(person("Joe", "biden-1"), width=642))


def test_without_dlib_people_are_cut_out_as_subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> FaceRecognizer:
        raise FaceRecognizerMissing("dlib is not installed: pip install dlib-bin (see requirements.txt)")

    monkeypatch.setattr(compose, "load_face_recognizer", missing)
    result = ComposeBackend().draw(request(person("Joe", "biden-1")))
    [placed] = result.parameters["placements"]
    assert placed["cut"] in ("subject", "whole")
    assert any("No face detector" in note for note in result.notes)
    assert result.parameters["provenance"]["libraries"]["face_recognizer"] is None


def test_registered_as_the_default_keyframe_backend_needing_no_weights() -> None:
    info = describe("compose")
    assert info.kind == "keyframe" and info.available and info.source is None
    assert info.capabilities.deterministic and not info.capabilities.needs_gpu
    assert info.capabilities.views == ("front", "full-figure")
    backend = create_picture_backend("compose")
    assert isinstance(backend, ComposeBackend)
    libraries = backend.draw(request(person("Joe", "biden-1"))).parameters["provenance"]["libraries"]
    assert libraries["opencv"] and libraries["dlib"] and libraries["face_recognizer"] == "dlib-resnet-v1"
