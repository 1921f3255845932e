"""pipelines.face_model on a tiny random ArcFace-shaped ONNX model, and identity scores with it.

No face-recognition weights are downloaded: each test builds a recognizer laid out like insightface's releases
(one float input ``(N, 3, 112, 112)`` named ``input.1``, one ``(N, 512)`` output) with the ``onnx`` package's
helper API -- a strided convolution, ReLU, global average pooling and a fixed random projection to 512 -- and saves
it to a temp folder, where it is loaded exactly as a user's ``w600k_r50.onnx`` is. Its weights are random, so the
tests assert only what holds for any recognizer: a face against itself is 1.0, rows are unit and deterministic,
takes without faces score as they do without a face model, and scores carry the face model's id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from sqlalchemy import select

from pipelines.animatic import AnimaticBackend
from pipelines.backend import GenerationRequest
from pipelines.consistency import look
from pipelines.embedders import Embedder, EmbedderError, OfflineEmbedder, face_crops
from pipelines.face_model import (
    FACE_MODEL_ENV,
    FaceModel,
    FaceModelError,
    FaceModelNotFound,
    NotAFaceModel,
    load_face_model,
    unload_face_models,
)
from pipelines.faces import FACE_RECOGNIZER_ID
from projects import cast, project, storyboard
from projects.errors import InvalidInput
from projects.render_queue import RenderSettings, queue_renders
from projects.scoring import score_project, score_take, stored_scores
from projects.studio import Studio
from projects.worker import RenderWorker
from storage.models import TakeScore

OFFLINE = OfflineEmbedder.id


def build_face_model(
    path: Path,
    *,
    seed: int = 0,
    input_shape: tuple[int | str, ...] = ("N", 3, 112, 112),
    width: int = 512,
    flatten: bool = True,
) -> Path:
    """A tiny random face recognizer in ONNX, saved to ``path``: Conv 8x8/8 (16 channels), ReLU, global average
    pooling, flatten, and a random 16 x ``width`` projection. ``flatten=False`` leaves the (N, 16, 1, 1) pooling
    output as the model's output (a shape no recognizer has)."""
    rng = np.random.default_rng(seed)
    conv = (rng.standard_normal((16, 3, 8, 8)) / 8).astype(np.float32)
    projection = rng.standard_normal((16, width)).astype(np.float32)
    batch = input_shape[0]
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w"], ["conv"], strides=[8, 8]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
    ]
    if flatten:
        nodes += [
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "projection"], ["embedding"]),
        ]
        output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, width])
    else:
        output = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [batch, 16, 1, 1])
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, list(input_shape))],
        [output],
        initializer=[numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(projection, "projection")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(autouse=True)
def no_configured_face_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(FACE_MODEL_ENV, raising=False)
    unload_face_models()
    yield
    unload_face_models()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_face_model(tmp_path_factory.mktemp("face") / "w600k_r50.onnx")


@pytest.fixture(scope="module")
def face_model(model_file: Path) -> FaceModel:
    return FaceModel(model_file)


@pytest.fixture(scope="module")
def pictures(photos: dict[str, Path]) -> dict[str, Image.Image]:
    return {name: Image.open(path).convert("RGB") for name, path in photos.items()}


def render(keyframe: Image.Image) -> np.ndarray:
    """A dolly-in take of ``keyframe`` from the real animatic backend, as tests/test_consistency.py makes them."""
    request = GenerationRequest(
        prompt="a shot", width=128, height=96, fps=8, num_frames=25, keyframe=keyframe, camera="dolly-in", seed=0
    )
    return AnimaticBackend().generate(request).frames


@pytest.fixture(scope="module")
def takes(pictures: dict[str, Image.Image]) -> dict[str, np.ndarray]:
    return {name: render(pictures[name]) for name in ("astronaut", "coffee")}


# Configuration and identity of the model.


def test_no_face_model_unless_one_is_configured(monkeypatch: pytest.MonkeyPatch, model_file: Path) -> None:
    assert load_face_model(None) is None
    monkeypatch.setenv(FACE_MODEL_ENV, "  ")
    assert load_face_model(None) is None
    monkeypatch.setenv(FACE_MODEL_ENV, str(model_file))
    from_env = load_face_model(None)
    assert isinstance(from_env, FaceModel) and from_env.path == model_file.resolve()
    assert load_face_model(None) is from_env  # loaded once
    assert load_face_model(model_file) is from_env  # an explicit path is the same file


def test_the_id_names_the_file_and_changes_with_it(tmp_path: Path) -> None:
    path = build_face_model(tmp_path / "glintr100.onnx", seed=0)
    first = load_face_model(path)
    assert first is not None
    name, file_name, digest = first.id.split(":")
    assert (name, file_name, len(digest)) == ("arcface", "glintr100.onnx", 10)
    assert FaceModel(path).id == first.id
    before = path.stat().st_mtime_ns
    build_face_model(path, seed=1)  # a different model under the same name
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a clock that has not ticked must not hide the change
    second = load_face_model(path)
    assert second is not None and second is not first
    assert second.id.startswith("arcface:glintr100.onnx:") and second.id != first.id
    # The file is hashed once: the id outlives the file.
    path.unlink()
    assert second.id != first.id and second.id.startswith("arcface:")


def test_embeddings_are_unit_rows_of_512_and_deterministic(
    face_model: FaceModel, model_file: Path, pictures: dict[str, Image.Image], tmp_path: Path
) -> None:
    assert isinstance(face_model, Embedder)
    assert face_model.width == 512
    faces = [*face_crops(pictures["astronaut"]), pictures["coffee"], pictures["chelsea"].convert("L")]
    rows = face_model.embed(faces)
    assert rows.shape == (3, 512) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(face_model.embed(faces), rows)
    np.testing.assert_allclose(FaceModel(model_file).embed(faces), rows, atol=1e-6)  # a fresh session
    np.testing.assert_allclose(face_model.embed(faces[1:2]), rows[1:2], atol=1e-6)  # batching changes nothing
    np.testing.assert_allclose(face_model.embed([np.asarray(faces[1])]), rows[1:2], atol=1e-6)  # arrays too
    assert face_model.embed([]).shape == (0, 512)
    assert float(rows[0] @ rows[0]) == pytest.approx(1.0)
    # A model with a fixed batch of 1 (some exports have one) gets its faces one at a time.
    fixed = FaceModel(build_face_model(tmp_path / "fixed.onnx", input_shape=(1, 3, 112, 112)))
    np.testing.assert_allclose(fixed.embed(faces), rows, atol=1e-6)


def test_what_is_not_a_face_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "w600k_r50.onnx"
    with pytest.raises(FaceModelNotFound, match=r"w600k_r50\.onnx does not exist.*CONTINUITY_FACE_MODEL"):
        load_face_model(missing)
    monkeypatch.setenv(FACE_MODEL_ENV, str(missing))
    with pytest.raises(FaceModelNotFound, match="does not exist"):
        load_face_model(None)
    text = tmp_path / "notes.onnx"
    text.write_text("these are not weights\n")
    with pytest.raises(NotAFaceModel, match=r"notes\.onnx is not a loadable ONNX model"):
        load_face_model(text)
    with pytest.raises(NotAFaceModel, match="is not a file"):
        FaceModel(tmp_path)
    classifier_sized = build_face_model(tmp_path / "resnet.onnx", input_shape=("N", 3, 224, 224))
    expected = r"takes input of shape \(N, 3, 224, 224\); an ArcFace face recognizer takes one float input "
    with pytest.raises(NotAFaceModel, match=expected + r"\(N, 3, 112, 112\) and returns \(N, 512\)"):
        load_face_model(classifier_sized)
    pooled = build_face_model(tmp_path / "pooled.onnx", flatten=False)
    with pytest.raises(NotAFaceModel, match=r"returns shape \(N, 16, 1, 1\);.*\(N, 512\) embeddings"):
        FaceModel(pooled)
    for error in (FaceModelNotFound, NotAFaceModel):
        assert issubclass(error, FaceModelError) and issubclass(error, EmbedderError)


# Identity with a face model.


def test_identity_compares_faces_with_the_face_model(
    face_model: FaceModel, takes: dict[str, np.ndarray], pictures: dict[str, Image.Image]
) -> None:
    embedder = OfflineEmbedder()
    astronaut = {"Astronaut": [pictures["astronaut"]]}
    own = look(takes["astronaut"], astronaut, embedder, face_model=face_model)
    plain = look(takes["astronaut"], astronaut, embedder)
    assert (own.embedder, own.face_model, plain.face_model) == (embedder.id, face_model.id, None)
    assert own.frames_with_faces == plain.frames_with_faces >= 2
    assert own.value != plain.value  # her face was compared by the face model
    # A take without faces is compared by the general embedder, exactly as without a face model.
    other = look(takes["coffee"], astronaut, embedder, face_model=face_model)
    assert other.frames_with_faces == 0 and other.face_model == face_model.id
    assert other.value == look(takes["coffee"], astronaut, embedder).value
    # Her face against itself is 1.0 whatever the weights; a take showing her face ranks above one without.
    still = np.stack([np.asarray(pictures["astronaut"])] * 4)
    itself = look(still, astronaut, embedder, face_model=face_model)
    assert itself.frames_with_faces == 4 and itself.value == pytest.approx(1.0, abs=1e-5)
    assert itself.value >= other.value
    assert own.value > other.value
    # A character whose references show no face (the cat) is compared by whole subjects, face model or not.
    cat = {"Cat": [pictures["chelsea"]]}
    assert look(takes["astronaut"], cat, embedder, face_model=face_model).value == pytest.approx(
        look(takes["astronaut"], cat, embedder).value
    )


# Scores through the studio.


def render_and_score(studio: Studio, project_id: int) -> None:
    queue_renders(studio, project_id, shots=[1, 2], takes=1, settings=RenderSettings(caption=False))
    with RenderWorker(studio, score=True) as worker:
        worker.run(once=True)


def test_identity_with_a_face_model_is_stored_apart(
    studio: Studio, photos: dict[str, Path], model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = project.create_project(studio, "Faces", width=128, height=96, fps=8)
    cast.add_character(studio, made.id, "Mara", references=[photos["astronaut"]])
    storyboard.add_shot(studio, made.id, prompt="Mara", duration=2, characters=["Mara"], keyframe=photos["astronaut"])
    storyboard.add_shot(studio, made.id, prompt="Mara?", duration=2, characters=["Mara"], keyframe=photos["coffee"])
    monkeypatch.setenv(FACE_MODEL_ENV, str(model_file))
    face_id = FaceModel(model_file).id
    combined = f"{OFFLINE}+{face_id}"
    render_and_score(studio, made.id)  # the worker scores each take as it finishes
    with studio.read() as session:
        rows = session.scalars(select(TakeScore)).all()
        stored = {(row.take.shot.position, row.metric): row.embedder for row in rows}
        details = {row.take.shot.position: row.details for row in rows if row.metric == "identity"}
    assert stored == {
        (1, "identity"): combined,
        (1, "look"): OFFLINE,
        (1, "stability"): OFFLINE,
        (2, "identity"): combined,
        (2, "look"): OFFLINE,
        (2, "continuity"): OFFLINE,
        (2, "stability"): OFFLINE,
    }
    assert details[1]["face_model"] == face_id and details[1]["embedder"] == OFFLINE
    with_faces = score_project(studio, made.id)
    assert [set(r.scores) for r in with_faces] == [
        {"identity", "look", "stability"},
        {"identity", "look", "continuity", "stability"},
    ]
    assert all(r.embedder == OFFLINE for r in with_faces)
    assert with_faces[0].scores["identity"] > with_faces[1].scores["identity"]
    # Without it, identity is scored again by the default face recognizer, under its own id; the ArcFace model's
    # stays beside it, and look is the same whichever face model there is.
    monkeypatch.delenv(FACE_MODEL_ENV)
    take_ids = [r.take_id for r in with_faces]
    assert "identity" not in stored_scores(studio, take_ids)[0].scores  # never mixed in from the face model
    plain = score_project(studio, made.id)
    assert all("identity" in r.scores for r in plain)
    assert [r.scores["look"] for r in plain] == pytest.approx([r.scores["look"] for r in with_faces], abs=0.02)
    # Shot 2 shows no face: the ArcFace model's cosine fell back on whole subjects, the recognizer says so.
    assert details[2]["frames_with_faces"] == 0
    assert plain[1].scores["identity"] == 0.0
    assert plain[1].details["identity"]["characters"]["Mara"]["verdict"] == "no face visible"
    with studio.read() as session:
        identities = {row.embedder for row in session.scalars(select(TakeScore).where(TakeScore.metric == "identity"))}
    assert identities == {f"{OFFLINE}+{FACE_RECOGNIZER_ID}", combined}
    # With the face model again, nothing needs scoring; its identity is read back.
    monkeypatch.setenv(FACE_MODEL_ENV, str(model_file))
    with studio.read() as session:
        before = set(session.scalars(select(TakeScore.id)))
    again = score_project(studio, made.id)
    assert [r.scores["identity"] for r in again] == [r.scores["identity"] for r in with_faces]
    assert [r.scores["stability"] for r in again] == [r.scores["stability"] for r in plain]  # shared by both
    with studio.read() as session:
        assert set(session.scalars(select(TakeScore.id))) == before
    # A face model that cannot load is a clear error, not a silent fallback.
    monkeypatch.setenv(FACE_MODEL_ENV, str(model_file.with_name("gone.onnx")))
    with pytest.raises(InvalidInput, match=r"gone\.onnx does not exist"):
        score_take(studio, take_ids[0])
