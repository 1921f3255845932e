"""Identity means the person: dlib's face recognizer on photographs of real people nobody here made.

The photographs are public-domain crops in ``tests/photos/`` (three of Barack Obama, one each of Joe Biden and
Grace Hopper; their sources and licences are in its README) and scikit-image's astronaut (Eileen Collins). Takes
are rendered from them by the real animatic backend at the studio's default size.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from test_consistency import render as animatic_take

from pipelines.consistency import IdentityScore, identity, look
from pipelines.embedders import OfflineEmbedder
from pipelines.faces import (
    DIFFERENT,
    NO_FACE,
    SAME,
    FaceRecognizer,
    load_face_recognizer,
    nearest,
    same_person,
    verdict,
)

PHOTOS = Path(__file__).parent / "photos"
PEOPLE = {"obama-1": "Obama", "obama-2": "Obama", "obama-3": "Obama", "biden-1": "Biden", "hopper-1": "Hopper"}
WIDTH, HEIGHT, FPS = 320, 192, 8


@pytest.fixture(scope="module")
def recognizer() -> FaceRecognizer:
    return load_face_recognizer()


@pytest.fixture(scope="module")
def portraits() -> dict[str, Image.Image]:
    found = {name: Image.open(PHOTOS / f"{name}.jpg").convert("RGB") for name in PEOPLE}
    found["astronaut"] = Image.fromarray(data.astronaut())
    return found


def who(name: str) -> str:
    return PEOPLE.get(name, "Collins")


def render(keyframe: Image.Image, *, frames: int = 17) -> np.ndarray:
    """A still take of ``keyframe`` at a size where a portrait's face is as large as in a medium shot."""
    return animatic_take(keyframe, camera="static", frames=frames, size=(WIDTH, HEIGHT), fps=FPS)


def judged(frames: np.ndarray, cast: dict[str, list[Image.Image]], recognizer: FaceRecognizer) -> IdentityScore:
    """Identity as the studio scores it: the take's look measured once, and lent to characters without a face."""
    return identity(frames, cast, recognizer, look(frames, cast, OfflineEmbedder()), fps=FPS)


def test_every_face_is_found_and_the_same_person_scores_far_above_another(
    recognizer: FaceRecognizer, portraits: dict[str, Image.Image]
) -> None:
    descriptors = {}
    for name, picture in portraits.items():
        faces = recognizer.faces(picture)
        assert faces, f"no face found in {name}"
        descriptors[name] = faces[0].descriptor
    same, other = [], []
    for a, b in itertools.combinations(descriptors, 2):
        score = same_person(nearest(recognizer.faces(portraits[a])[:1], [descriptors[b]]))
        (same if who(a) == who(b) else other).append(score)
    assert len(same) == 3 and len(other) == 12
    # Calibrated: the same person reads "same person", everyone else "different person", far apart. (The
    # nearest strangers are Grace Hopper and Eileen Collins, at a distance of 0.66 against dlib's 0.6.)
    assert min(same) > 0.9 and max(other) < 0.27 and min(same) - max(other) > 0.6, (same, other)
    assert {verdict(score) for score in same} == {SAME} and {verdict(score) for score in other} == {DIFFERENT}


def test_a_mirrored_or_smaller_picture_is_still_the_same_person(
    recognizer: FaceRecognizer, portraits: dict[str, Image.Image]
) -> None:
    reference = recognizer.faces(portraits["obama-1"])[0].descriptor
    mirrored = portraits["obama-2"].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    small = portraits["obama-3"].resize((70, 80))
    for picture in (mirrored, small):
        faces = recognizer.faces(picture)
        assert faces and verdict(same_person(nearest(faces, [reference]))) == SAME
    assert recognizer.faces(Image.new("RGB", (640, 384), "grey")) == []


def test_a_take_of_the_character_is_the_same_person_and_another_is_flagged(
    recognizer: FaceRecognizer, portraits: dict[str, Image.Image]
) -> None:
    references = {"Barack": [portraits["obama-1"]]}
    look_embedder = OfflineEmbedder()
    own = judged(render(portraits["obama-2"]), references, recognizer)
    wrong = judged(render(portraits["biden-1"]), references, recognizer)
    nobody = judged(render(Image.fromarray(data.coffee())), references, recognizer)
    assert own.characters["Barack"]["verdict"] == SAME and own.value > 0.9
    assert wrong.characters["Barack"]["verdict"] == DIFFERENT and wrong.value < 0.1
    assert own.embedder == recognizer.id and own.frames_with_faces == own.frames_scored
    # No face visible: said, counted, and never blended with a look-alike score.
    barack = nobody.characters["Barack"]
    assert barack["verdict"] == NO_FACE and nobody.value == 0.0 and nobody.frames_with_faces == 0
    assert barack["frames_without_face"] == nobody.frames_scored and barack["frames_with_face"] == 0
    assert all(frame["score"] is None for frame in barack["frames"])
    # The look descriptor, by contrast, finds the wrong man's portrait about as close as the right one's.
    looks = [look(render(portraits[name]), references, look_embedder).value for name in ("obama-2", "biden-1")]
    assert abs(looks[0] - looks[1]) < own.value - wrong.value


def test_a_long_take_says_from_which_second_the_character_was_lost(
    recognizer: FaceRecognizer, portraits: dict[str, Image.Image]
) -> None:
    kept = render(portraits["obama-2"], frames=33)
    gone = render(portraits["hopper-1"], frames=33)
    take = np.concatenate([kept[:17], gone[:16]])  # Obama for 2 seconds, then Grace Hopper
    result = judged(take, {"Barack": [portraits["obama-1"]]}, recognizer)
    barack = result.characters["Barack"]
    seconds = [frame["second"] for frame in barack["frames"]]
    assert seconds == sorted(seconds) and seconds[0] == 0.0 and seconds[-1] == 4.0
    first_lost = min(frame["second"] for frame in barack["frames"] if frame["second"] * FPS >= 17)
    assert barack["lost_from"] == first_lost
    assert all(verdict(f["score"]) == SAME for f in barack["frames"] if f["second"] < first_lost)
    assert all(verdict(f["score"]) == DIFFERENT for f in barack["frames"] if f["second"] >= first_lost)
    steady = judged(kept, {"Barack": [portraits["obama-1"]]}, recognizer)
    assert steady.characters["Barack"]["lost_from"] is None


def test_a_character_without_a_face_is_scored_on_the_whole_subject(
    recognizer: FaceRecognizer, portraits: dict[str, Image.Image]
) -> None:
    cat = Image.fromarray(data.chelsea())
    cast = {"Barack": [portraits["obama-1"]], "Cat": [cat]}
    result = judged(render(cat), cast, recognizer)
    assert result.characters["Cat"]["verdict"] == "whole subject" and not result.characters["Cat"]["face"]
    assert result.per_character["Cat"] == pytest.approx(look(render(cat), {"Cat": [cat]}, OfflineEmbedder()).value)
    assert result.characters["Barack"]["verdict"] == NO_FACE
    assert result.value == pytest.approx(result.per_character["Cat"] / 2)
    only_barack = look(render(cat), {"Barack": [portraits["obama-1"]]}, OfflineEmbedder())
    with pytest.raises(ValueError, match="no part for 'Cat'"):
        identity(render(cat), cast, recognizer, only_barack, fps=FPS)
