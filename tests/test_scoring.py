"""Consistency scores through the studio: computed by the worker when a take finishes, on demand for older
takes, stored per embedder, ranked, and a best take suggested -- on real photographs and real renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from takes_made import queued_takes
from tiny_embedders import save_tiny

from app.cli import main
from pipelines.embedders import OfflineEmbedder, unload_embedders
from pipelines.faces import FACE_RECOGNIZER_ID
from projects import cast, project, storyboard, takes
from projects.errors import InvalidInput, NotFound
from projects.render_queue import RenderSettings, queue_renders
from projects.scoring import best_per_shot, rank_takes, score_project, score_take, stored_scores, suggest_take
from projects.studio import Studio
from projects.worker import RenderWorker
from storage.models import TakeScore

OFFLINE = OfflineEmbedder.id
PEOPLE = f"{OFFLINE}+{FACE_RECOGNIZER_ID}"  # identity: the face recognizer, with the embedder for non-humans


def render(studio: Studio, project_id: int, shots: list[int], *, score: bool = True, takes_per_shot: int = 1) -> None:
    queue_renders(studio, project_id, shots=shots, takes=takes_per_shot, settings=RenderSettings(caption=False))
    with RenderWorker(studio, score=score) as worker:
        worker.run(once=True)


@pytest.fixture
def film(studio: Studio, photos: dict[str, Path]) -> int:
    """Mara (references: the astronaut photo) in shot 1 started from her photo, and in shot 2 from a cup of
    coffee; shot 3 continues from shot 2; shot 4 starts from the rocket."""
    made = project.create_project(studio, "Harbour", width=128, height=96, fps=8)
    cast.add_character(studio, made.id, "Mara", description="an astronaut", references=[photos["astronaut"]])
    storyboard.add_shot(studio, made.id, prompt="Mara", duration=2, characters=["Mara"], keyframe=photos["astronaut"])
    storyboard.add_shot(studio, made.id, prompt="Mara?", duration=2, characters=["Mara"], keyframe=photos["coffee"])
    storyboard.add_shot(studio, made.id, prompt="and on", duration=2, continue_from_previous=True, camera="pan-left")
    storyboard.add_shot(studio, made.id, prompt="a cut", duration=2, keyframe=photos["rocket"])
    return made.id


def by_shot(studio: Studio, project_id: int) -> dict[int, dict[str, float]]:
    results = score_project(studio, project_id)
    return {r.shot_number: r.scores for r in results}


def test_the_worker_scores_every_finished_take(studio: Studio, film: int) -> None:
    render(studio, film, [1, 2, 3, 4])
    with studio.read() as session:
        rows = session.scalars(select(TakeScore)).all()
        assert {row.embedder for row in rows} == {OFFLINE, PEOPLE}
        assert {row.metric for row in rows if row.embedder == PEOPLE} == {"identity"}
        metrics = {(row.take.shot.position, row.metric) for row in rows}
    # Identity and look where the shot has characters, continuity where there is a shot before, stability always.
    assert metrics == {
        (1, "identity"),
        (1, "look"),
        (1, "stability"),
        (2, "identity"),
        (2, "look"),
        (2, "continuity"),
        (2, "stability"),
        (3, "continuity"),
        (3, "stability"),
        (4, "continuity"),
        (4, "stability"),
    }
    scores = by_shot(studio, film)
    # Mara's own photo keeps her identity; a cup of coffee does not.
    assert scores[1]["identity"] > scores[2]["identity"] + 0.1
    # Shot 3 continues from shot 2's last frame; shot 4 cuts to an unrelated picture.
    assert scores[3]["continuity"] > scores[4]["continuity"] + 0.3
    assert all(0.0 <= value <= 1.0 for shot in scores.values() for value in shot.values())


def test_older_takes_are_scored_on_demand_once(studio: Studio, film: int) -> None:
    render(studio, film, [1, 2], score=False)
    with studio.read() as session:
        assert session.scalars(select(TakeScore)).all() == []
    first = score_project(studio, film)
    assert [r.shot_number for r in first] == [1, 2] and all(r.scores for r in first)
    with studio.read() as session:
        stamps = {row.id: row.created_at for row in session.scalars(select(TakeScore))}
    again = score_project(studio, film)
    assert [r.scores for r in again] == [r.scores for r in first]
    with studio.read() as session:
        assert {row.id: row.created_at for row in session.scalars(select(TakeScore))} == stamps  # not recomputed
    rescored = score_project(studio, film, rescore=True)
    with studio.read() as session:
        assert set(session.scalars(select(TakeScore.id))).isdisjoint(stamps)  # replaced, not duplicated
    assert len(rescored) == len(first)
    for recomputed, original in zip(rescored, first, strict=True):
        assert recomputed.scores == pytest.approx(original.scores)


def test_the_best_take_of_a_shot_is_suggested(studio: Studio, film: int, photos: dict[str, Path]) -> None:
    shot = storyboard.list_shots(studio, film).items[0]
    render(studio, film, [1], score=True)  # take 1 from Mara's photo
    storyboard.update_shot(studio, shot.id, keyframe=photos["chelsea"])
    render(studio, film, [1], score=True)  # take 2 from a cat
    ranked = rank_takes(studio, film, 1, metric="identity")
    assert [r.take_number for r in ranked] == [1, 2]
    assert ranked[0].scores["identity"] > ranked[1].scores["identity"]
    assert suggest_take(studio, film, 1) == ranked[0].take_id
    with pytest.raises(InvalidInput, match="metric"):
        rank_takes(studio, film, 1, metric="beauty")


def test_scores_of_different_embedders_are_kept_apart(studio: Studio, film: int, tmp_path: Path) -> None:
    clip_folder, _ = save_tiny(tmp_path, "clip")
    render(studio, film, [1])
    take_id = takes.list_takes(studio, film).items[0].id
    clip = score_take(studio, take_id, embedder=str(clip_folder))
    assert clip.embedder.startswith("clip:") and clip.embedder != OFFLINE
    offline = stored_scores(studio, [take_id], embedder=OFFLINE)[0]
    stored_clip = stored_scores(studio, [take_id], embedder=clip.embedder)[0]
    assert stored_clip.scores == pytest.approx(clip.scores)
    assert offline.embedder == OFFLINE and set(offline.scores) == set(clip.scores)
    with studio.read() as session:
        stored = {row.embedder for row in session.scalars(select(TakeScore))}
    assert stored == {OFFLINE, PEOPLE, clip.embedder, f"{clip.embedder}+{FACE_RECOGNIZER_ID}"}
    unload_embedders()


def test_scoring_refuses_what_it_cannot_score(studio: Studio, film: int, tmp_path: Path) -> None:
    [queued] = queued_takes(studio, film, 1)
    with pytest.raises(InvalidInput, match="only a finished take"):
        score_take(studio, queued)
    with pytest.raises(InvalidInput, match="embedder"):
        score_project(studio, film, embedder=str(tmp_path / "no-such-model"))
    with pytest.raises(NotFound, match="no shot 9"):
        score_project(studio, film, shot_number=9)
    with pytest.raises(NotFound):
        score_project(studio, "Nope")


def test_score_command_prints_every_take(studio: Studio, film: int, capsys: pytest.CaptureFixture[str]) -> None:
    render(studio, film, [1, 2], score=False, takes_per_shot=2)
    data_dir = str(studio.data_dir)
    assert main(["score", "Harbour", "--json", "--data-dir", data_dir]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["embedder"] == OFFLINE
    assert [(t["shot_number"], t["take_number"]) for t in report["takes"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for take in report["takes"]:
        assert set(take) >= {"take_id", "identity", "continuity", "stability", "overall", "embedder", "approved"}
        assert 0 <= take["overall"] <= 1
    assert set(report["suggested"]) == {"1", "2"}
    assert main(["score", "Harbour", "--shot", "2", "--json", "--data-dir", data_dir]) == 0
    assert {t["shot_number"] for t in json.loads(capsys.readouterr().out)["takes"]} == {2}
    assert main(["score", "Harbour", "--shot", "7", "--data-dir", data_dir]) == 1
    assert "no shot 7" in capsys.readouterr().err


def test_a_take_scored_before_faces_were_recognised_gets_its_identity_on_demand(studio: Studio, film: int) -> None:
    render(studio, film, [1])
    (take_id,) = [t.id for t in takes.list_takes(studio, film).items]
    first = score_project(studio, film, shot_number=1)[0]
    # As revision 0007 leaves a take scored before: its identity was the descriptor's, relabelled look.
    with studio.write() as session:
        for row in session.scalars(select(TakeScore).where(TakeScore.take_id == take_id)):
            if row.metric == "identity":
                session.delete(row)
    assert "identity" not in stored_scores(studio, [take_id])[0].scores
    again = score_project(studio, film, shot_number=1)[0]
    assert again.scores["identity"] == pytest.approx(first.scores["identity"], abs=0.01)  # decoded, not in memory
    assert again.details["identity"]["characters"]["Mara"]["verdict"] == first.verdicts["Mara"]
    # And one scored before look existed gets its look.
    with studio.write() as session:
        for row in session.scalars(select(TakeScore).where(TakeScore.take_id == take_id, TakeScore.metric == "look")):
            session.delete(row)
    assert score_project(studio, film, shot_number=1)[0].scores["look"] == pytest.approx(
        first.scores["look"], abs=0.02
    )


def test_approve_best_from_the_command_line_follows_the_chain(
    studio: Studio, film: int, capsys: pytest.CaptureFixture[str]
) -> None:
    render(studio, film, [1, 2], takes_per_shot=2)
    render(studio, film, [3])  # shot 3 starts from shot 2's newest take, whichever scores best there
    data = ["--data-dir", str(studio.data_dir), "--json"]
    assert main(["approve-best", "Harbour", *data]) == 0
    approved = {t["shot_number"]: t for t in json.loads(capsys.readouterr().out)["approved"]}
    best = {shot: item.take_id for shot, item in best_per_shot(score_project(studio, film)).items()}
    assert approved[1]["id"] == best[1]
    assert approved[2]["id"] == best[2]
    # Shot 3's only take continued shot 2's newest take: approved only if that is the one approved in shot 2.
    (chained,) = takes.list_takes(studio, film, shot_number=3).items
    assert (3 in approved) == (chained.source_take_id == best[2])
    # Nothing left to do: every shot keeps its approval.
    assert main(["approve-best", "Harbour", "--data-dir", str(studio.data_dir)]) == 0
    assert "every shot keeps its approval" in capsys.readouterr().out
