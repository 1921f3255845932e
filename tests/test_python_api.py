"""The Python API (``import continuity``) end to end: the notebook workflow, chaining, bad input, failures,
interrupts, a second worker, progress bars, inline players, fetching weights and serving the page.

Everything is real: a SQLite data directory in a temp folder, the animatic backend, H.264 files checked with
ffprobe, a Gradio page fetched with urllib on a free loopback port. The only stand-ins are at the edges: the
animatic's frame generator made slow or made to fail for one seed, and an offline Hugging Face cache. Projects
are small (96x64 at 8 fps, shots of 1-1.5 s) so a take renders in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import probes
import pytest
import tqdm.auto  # noqa: F401 -- imported up front, as the first progress bar would, so timings below hold
from probes import free_port

import continuity
import projects.render_queue as render_module
from continuity.display import Table
from pipelines.animatic import AnimaticBackend
from pipelines.backend import BackendError
from projects.records import TakeInfo
from projects.worker import RenderWorker, WorkerBusy

WIDTH, HEIGHT, FPS = 96, 64, 8


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model folders, embedder, face model, credentials or data directory from the machine running the tests."""
    for key in list(os.environ):
        if key.startswith("CONTINUITY_"):
            monkeypatch.delenv(key)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[continuity.Studio]:
    opened = continuity.open(tmp_path / "data")
    yield opened
    opened.close()


@pytest.fixture
def other_api(tmp_path: Path) -> Iterator[continuity.Studio]:
    opened = continuity.open(tmp_path / "other")
    yield opened
    opened.close()


# Helpers.


def new_film(api: continuity.Studio, name: str = "Lighthouse", *, shot: Path | None = None) -> continuity.Project:
    """A small project; with ``shot`` (a picture), one shot of a second that starts from it."""
    film = api.create_project(name, width=WIDTH, height=HEIGHT, fps=FPS)
    if shot is not None:
        film.add_shot("The lighthouse at dusk", 1.0, keyframe=shot)
    return film


def ffprobe(path: Path) -> dict[str, Any]:
    """Stream types and duration as ffprobe reads them, independent of the studio's own video code."""
    parsed = probes.ffprobe(path, "stream=codec_type:format=duration")
    return {
        "streams": [stream["codec_type"] for stream in parsed["streams"]],
        "duration": float(parsed["format"]["duration"]),
    }


def job_states(film: continuity.Project) -> list[str]:
    return sorted(job.state for job in film.jobs())


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread, as in a terminal or a notebook, whatever the harness set."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def slow_animatic(monkeypatch: pytest.MonkeyPatch, seconds: float) -> threading.Event:
    """Each animatic take sleeps before drawing its frames; the event is set when the first one starts."""
    started = threading.Event()
    original = AnimaticBackend._generate

    def slow(self: AnimaticBackend, request: Any, progress: Any, cancel: Any) -> Any:
        started.set()
        time.sleep(seconds)
        return original(self, request, progress, cancel)

    monkeypatch.setattr(AnimaticBackend, "_generate", slow)
    return started


def interrupt_main_thread_after(event: threading.Event, delay: float) -> threading.Thread:
    """Ctrl-C, as a terminal sends it: SIGINT to the main thread, ``delay`` seconds after ``event``."""

    def send() -> None:
        if event.wait(10):
            time.sleep(delay)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


# 1. The whole workflow.


def test_the_notebook_workflow_from_project_to_bundle(
    api: continuity.Studio, other_api: continuity.Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    film = new_film(api)
    assert repr(film) == f"<Project 'Lighthouse': 0 shot(s), 0 character(s), {WIDTH}x{HEIGHT} at {FPS} fps>"
    mara = film.add_character("Mara", "a red-haired keeper", references=[photos["astronaut"], photos["chelsea"]])
    assert [c.name for c in film.characters()] == ["Mara"] and len(mara.references) == 2
    film.add_shot("The lighthouse at dusk", 1.0, title="Arrival", camera="dolly-in", keyframe=photos["coffee"])
    film.add_shot("Mara looks out to sea", 1.5, characters=["Mara"], camera="pan-left", keyframe_character="Mara")
    film.add_shot("Mara turns away", 1.0, characters=["Mara"], continue_from_previous=True)
    assert [(s.number, s.keyframe.source, s.continue_from_previous) for s in film.shots()] == [
        (1, "image", False),
        (2, "character", False),
        (3, "none", True),
    ]
    assert len(film.storyboard()) == 3

    made = film.render(takes=2, seed=7, progress=False)
    assert all(isinstance(take, TakeInfo) for take in made)
    assert [(t.shot_number, t.take_number, t.seed, t.status) for t in made] == [
        (1, 1, 7, "done"),
        (1, 2, 8, "done"),
        (2, 1, 7, "done"),
        (2, 2, 8, "done"),
        (3, 1, 7, "done"),
        (3, 2, 8, "done"),
    ]
    for take in made:
        assert take.video_path is not None and take.video_path.is_file()
        assert ffprobe(take.video_path)["streams"] == ["video"]
    # The chained shot started from shot 2's newest take, as nothing was approved yet.
    newest_of_2 = max((t for t in made if t.shot_number == 2), key=lambda t: t.finished_at)
    assert {t.provenance["source_take_id"] for t in made if t.shot_number == 3} == {newest_of_2.id}

    scores = film.score()
    assert isinstance(scores, continuity.Scores) and len(scores) == 6
    ids_of = {shot: {t.id for t in made if t.shot_number == shot} for shot in (1, 2, 3)}
    assert set(scores.best) == {1, 2, 3}
    assert all(scores.best[shot] in ids_of[shot] for shot in (1, 2, 3))
    assert all(0.0 <= item.overall <= 1.0 for item in scores)
    assert "identity" in repr(scores) and "<table>" in scores._repr_html_()

    approved = film.approve_best()
    assert approved and all(t.approved for t in approved)
    for _ in range(3):  # as the quickstart does: shots left without a take from their source are rendered again
        missing = film.status().missing_approval
        if not missing:
            break
        film.render(missing, takes=2, seed=11, progress=False)
        film.approve_best()
    status = film.status()
    assert status.missing_approval == () and status.approved_count == 3
    shots = film.shots()
    assert not any(s.stale for s in shots)
    approved_takes = {t.shot_number: t for t in film.takes(status="done") if t.approved}
    assert approved_takes[3].provenance["source_take_id"] == approved_takes[2].id

    result = film.export(timeline=True, contact_sheet=True, progress=False)
    assert isinstance(result, continuity.ExportResult)
    folder = api.data_dir / "exports" / "Lighthouse"
    assert [p.suffix for p in result.files] == [".mp4", ".otio", ".png"]
    assert all(p.parent == folder and p.is_file() and p.stat().st_size > 0 for p in result.files)
    probed = ffprobe(result.path)
    assert "video" in probed["streams"]
    assert probed["duration"] == pytest.approx(3.5, abs=0.3)  # 1 + 1.5 + 1 seconds of approved takes
    assert json.loads(result.files[1].read_text())["OTIO_SCHEMA"].startswith("Timeline")

    packed = film.pack(tmp_path / "lighthouse.zip")
    assert packed.path.is_file() and packed.counts.shots == 3 and packed.counts.takes == 3

    restored = other_api.unpack(packed.path)
    assert restored.name == "Lighthouse"
    assert len(restored.shots()) == len(film.shots()) == 3
    here = sorted((t.shot_number, t.take_number, t.video_sha256) for t in film.takes() if t.approved)
    there = sorted((t.shot_number, t.take_number, t.video_sha256) for t in restored.takes() if t.approved)
    assert there == here and len(there) == 3
    assert restored.status().missing_approval == ()


# 2. Approving along the chain.


def test_approve_best_only_approves_takes_started_from_the_approved_source(
    api: continuity.Studio, photos: dict[str, Path]
) -> None:
    film = new_film(api)
    film.add_shot("The lighthouse at dusk", 1.0, keyframe=photos["coffee"], camera="dolly-in")
    film.add_shot("The lamp turns", 1.0, continue_from_previous=True)
    (older,) = film.render(1, seed=1, progress=False)
    (newer,) = film.render(1, seed=2, progress=False)
    (chained,) = film.render(2, seed=3, progress=False)
    assert chained.provenance["source_take_id"] == newer.id  # nothing approved: it started from the newest

    film.approve(older)
    assert film.shot(1).approved_take_id == older.id
    assert film.shot(2).stale  # its take started from a take that is no longer shot 1's

    approved = film.approve_best()
    assert [t.id for t in approved] == []  # shot 1 keeps its approval; shot 2 has no take from it
    assert film.shot(1).approved_take_id == older.id
    assert film.shot(2).approved_take_id is None and film.shot(2).stale
    assert film.status().missing_approval == (2,)
    assert [s.stale for s in film.status().shots] == [False, True]

    (again,) = film.render(2, seed=4, progress=False)
    assert again.provenance["source_take_id"] == older.id
    approved = film.approve_best()
    assert [t.id for t in approved] == [again.id]
    assert film.shot(2).approved_take_id == again.id and not film.shot(2).stale
    assert film.status().missing_approval == ()


def test_approve_best_rechecks_a_kept_approval_after_approving_the_shot_before(
    api: continuity.Studio, photos: dict[str, Path]
) -> None:
    film = new_film(api, shot=photos["coffee"])
    film.add_shot("The lamp turns", 1.0, continue_from_previous=True)
    film.add_shot("The beam sweeps the sea", 1.0, continue_from_previous=True)
    (a,) = film.render(1, seed=1, progress=False)
    (x,) = film.render(2, seed=2, progress=False)  # from a
    (y,) = film.render(3, seed=3, progress=False)  # from x
    for take in (a, x, y):
        film.approve(take)
    (b,) = film.render(1, seed=4, progress=False)
    film.approve(b)  # shot 2 (from a) is stale now
    (z,) = film.render(2, seed=5, progress=False)  # from b
    film.approve(z)
    (w,) = film.render(3, seed=6, progress=False)  # from z
    film.approve(x)  # back to x: shot 3's approved y (from x) is current again, shot 2 is stale
    assert w.provenance["source_take_id"] == z.id and z.provenance["source_take_id"] == b.id
    assert [s.stale for s in film.shots()] == [False, True, False]

    film.approve_best()
    # Shot 2 now holds z (the only take from b); shot 3 must follow it with w, the only take from z.
    assert film.shot(2).approved_take_id == z.id
    assert not film.shot(3).stale, "shot 3 kept y, which started from x, not from shot 2's approved z"
    assert film.shot(3).approved_take_id == w.id


# 3. Bad input changes nothing.


def test_bad_input_raises_and_changes_nothing(api: continuity.Studio, photos: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(continuity.NotFound, match="nope"):
        api.project("nope")
    film = new_film(api, shot=photos["coffee"])

    with pytest.raises(continuity.InvalidInput, match="between 1 and 100 takes"):
        film.render(takes=0, progress=False)
    with pytest.raises(continuity.NotFound, match="no shot 99"):
        film.render(shots=[99], progress=False)
    with pytest.raises(continuity.InvalidInput, match="shot numbers"):
        film.render(shots=["1"], progress=False)
    with pytest.raises(continuity.InvalidInput, match="shot numbers"):
        film.render(shots=True, progress=False)
    assert film.jobs() == [] and film.takes() == []

    (take,) = film.render(progress=False)
    with pytest.raises(continuity.InvalidInput, match="must be a take"):
        film.approve(True)
    with pytest.raises(continuity.InvalidInput, match="must be a take"):
        film.approve("1")
    assert film.shot(1).approved_take_id is None
    film.approve(take)

    out = tmp_path / "film.mp4"
    with pytest.raises(continuity.InvalidInput, match=r"timeline.*\.otio"):
        film.export(out, timeline=tmp_path / "film.txt", progress=False)
    assert not out.exists() and not (tmp_path / "film.txt").exists()
    with pytest.raises(continuity.InvalidInput, match="self_contained"):
        film.export(out, self_contained=True, progress=False)
    with pytest.raises(continuity.InvalidInput, match="out"):
        film.export(tmp_path / "film.mov", progress=False)
    assert not out.exists() and not (tmp_path / "film.mov").exists()

    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("this is not a picture")
    with pytest.raises(continuity.InvalidInput):
        film.add_character("Mara", "a keeper", references=[not_a_picture])
    with pytest.raises(continuity.InvalidInput):
        film.add_character("Mara", "a keeper", references=[photos["astronaut"], not_a_picture])
    assert film.characters() == []

    with pytest.raises(continuity.Conflict, match="already exists"):
        api.create_project("lighthouse", width=WIDTH, height=HEIGHT, fps=FPS)  # names are case-insensitive
    assert [p.name for p in api.projects()] == ["Lighthouse"]
    assert film.info.shot_count == 1

    fresh = api.create_project("Lighthouse", width=64, height=64, fps=FPS, replace=True)
    assert [(p.name, p.width, p.shot_count) for p in api.projects()] == [("Lighthouse", 64, 0)]
    assert fresh.takes() == [] and fresh.jobs() == []


def test_replace_with_bad_settings_keeps_the_old_project(api: continuity.Studio, photos: dict[str, Path]) -> None:
    new_film(api, shot=photos["coffee"])
    with pytest.raises(continuity.InvalidInput, match="width"):
        api.create_project("Lighthouse", width=63, replace=True)
    assert [(p.name, p.shot_count) for p in api.projects()] == [("Lighthouse", 1)]


def test_a_handle_to_a_deleted_project_does_not_act_on_another(
    api: continuity.Studio, photos: dict[str, Path]
) -> None:
    old = new_film(api, "Lighthouse")
    api.delete_project("Lighthouse")
    other = new_film(api, "Harbour")
    other.add_shot("The harbour at dawn", 1.0, keyframe=photos["coffee"])
    with pytest.raises(continuity.NotFound):
        old.render(progress=False)
    assert other.takes() == []


def test_outputs_asked_for_with_true_go_beside_a_named_film(
    api: continuity.Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    film = new_film(api, shot=photos["coffee"])
    (take,) = film.render(progress=False)
    film.approve(take)
    result = film.export(tmp_path / "cut.mp4", timeline=True, contact_sheet=True, progress=False)
    assert result.files == [tmp_path / "cut.mp4", tmp_path / "cut.otio", tmp_path / "cut-storyboard.png"]
    assert all(path.is_file() for path in result.files)
    assert not (api.data_dir / "exports").exists()


# 4. A take that fails.


def test_a_failed_take_raises_render_failed_and_keeps_the_others(
    api: continuity.Studio, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = AnimaticBackend._generate

    def blows_a_fuse_on_seed_41(self: AnimaticBackend, request: Any, progress: Any, cancel: Any) -> Any:
        if request.seed == 41:
            raise BackendError("the lamp blew a fuse")
        return original(self, request, progress, cancel)

    monkeypatch.setattr(AnimaticBackend, "_generate", blows_a_fuse_on_seed_41)
    film = new_film(api, shot=photos["coffee"])

    with pytest.raises(continuity.RenderFailed) as caught:
        film.render(takes=2, seed=40, progress=False)
    failure = caught.value
    assert isinstance(failure, continuity.StudioError)
    assert "1 of 2 take(s) failed" in str(failure) and "the lamp blew a fuse" in str(failure)
    assert [(t.seed, t.status) for t in failure.takes] == [(40, "done"), (41, "failed")]
    finished, failed = failure.takes
    assert failed.error == "the lamp blew a fuse" and failed.video_path is None
    assert finished.video_path is not None and finished.video_path.is_file()
    assert [t.id for t in film.takes(status="done")] == [finished.id]
    assert job_states(film) == ["done", "failed"]


# 5. Interrupting the wait.


def test_interrupting_the_wait_cancels_every_unfinished_job(
    api: continuity.Studio, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, ctrl_c: None
) -> None:
    film = new_film(api, shot=photos["coffee"])
    queued = film.render(takes=4, seed=1, wait=False, progress=False)
    assert [t.status for t in queued] == ["queued"] * 4
    jobs = film.jobs()
    assert [j.take_id for j in jobs] == [t.id for t in queued]

    started = slow_animatic(monkeypatch, 1.0)
    sender = interrupt_main_thread_after(started, 0.25)  # the first take is mid-render, three are queued
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        api.wait(jobs, progress=False)
    sender.join()
    assert time.monotonic() - began < 5  # it stopped after the take in hand, not after all four

    assert job_states(film) == ["cancelled"] * 4
    assert [t.status for t in film.takes()] == ["cancelled"] * 4
    assert all(t.video_path is None for t in film.takes())
    # Nothing keeps rendering: the device is free again.
    RenderWorker(api.core).close()


def test_a_job_finishing_while_the_interrupt_cancels_it_does_not_stop_the_cancelling(
    api: continuity.Studio, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, ctrl_c: None
) -> None:
    film = new_film(api, shot=photos["coffee"])
    film.render(takes=4, seed=1, wait=False, progress=False)
    jobs = film.jobs()
    started = slow_animatic(monkeypatch, 0.5)
    real_cancel = render_module.cancel_job
    raced: list[int] = []

    def cancel_after_the_worker_finished(core: Any, job_id: int) -> Any:
        # The race, made certain: the running job finishes between the state read and the cancel.
        if not raced:
            raced.append(job_id)
            deadline = time.monotonic() + 10
            while render_module.get_job(core, job_id).state == "running" and time.monotonic() < deadline:
                time.sleep(0.05)
        return real_cancel(core, job_id)

    monkeypatch.setattr(render_module, "cancel_job", cancel_after_the_worker_finished)
    sender = interrupt_main_thread_after(started, 0.1)
    try:
        with pytest.raises(KeyboardInterrupt):
            api.wait(jobs, progress=False)
    finally:
        sender.join()
    assert not {"queued", "running"} & set(job_states(film))


def test_wait_accepts_the_takes_render_returned(api: continuity.Studio, photos: dict[str, Path]) -> None:
    film = new_film(api, shot=photos["coffee"])
    queued = film.render(takes=2, seed=1, wait=False, progress=False)
    done = api.wait(queued, progress=False)
    assert [t.status for t in done] == ["done", "done"]


def test_wait_refuses_what_it_cannot_wait_for(
    api: continuity.Studio, other_api: continuity.Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    film = new_film(api, shot=photos["coffee"])
    (take,) = film.render(seed=1, progress=False)
    film.approve(take)
    moved = other_api.unpack(film.pack(tmp_path / "film.zip").path)
    (unpacked,) = moved.takes()
    with pytest.raises(continuity.NotFound, match="no render job here"):
        other_api.wait([unpacked], progress=False)
    for wrong in ("1", True, None):
        with pytest.raises(continuity.InvalidInput, match="takes, take ids or jobs"):
            api.wait([wrong], progress=False)
    assert api.wait([take], progress=False)[0].id == take.id  # finished already: returns at once


def test_approve_best_follows_the_chain_of_takes_merged_from_another_data_directory(
    api: continuity.Studio, other_api: continuity.Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    film = new_film(api, shot=photos["coffee"])
    film.add_shot("The lamp turns", 1.0, continue_from_previous=True)
    away = other_api.unpack(film.pack(tmp_path / "out.zip", takes="none").path)
    # Takes of another project first, so that ids there are not the ids here.
    new_film(other_api, "Harbour", shot=photos["rocket"]).render(takes=3, seed=1, progress=False)
    (first,) = away.render(1, seed=5, progress=False)
    away.approve(first)
    (second,) = away.render(2, seed=6, progress=False)
    assert second.source_take_id == first.id == second.provenance["source_take_id"]

    merged = film.merge(away.pack(tmp_path / "back.zip", takes="all").path)
    assert merged.takes_added == 2
    home_first, home_second = film.takes()
    assert home_second.source_take_id == home_first.id != home_second.provenance["source_take_id"]
    film.approve_best()
    assert [t.approved for t in film.takes()] == [True, True]
    assert film.status().missing_approval == ()


def test_a_take_of_another_project_is_refused(api: continuity.Studio, photos: dict[str, Path]) -> None:
    film = new_film(api, "Lighthouse", shot=photos["coffee"])
    harbour = new_film(api, "Harbour")
    harbour.add_shot("The harbour at dawn", 1.0, keyframe=photos["rocket"])
    (take,) = harbour.render(seed=3, progress=False)
    for act in (film.approve, film.render_again, film.show):
        with pytest.raises(continuity.InvalidInput, match="belongs to another project"):
            act(take)
    assert film.takes() == [] and film.jobs() == []
    assert not harbour.takes()[0].approved and len(harbour.takes()) == 1
    assert harbour.approve(take.id).approved


def test_a_failed_export_leaves_no_empty_exports_folder(api: continuity.Studio, photos: dict[str, Path]) -> None:
    film = new_film(api, shot=photos["coffee"])
    exports = api.data_dir / "exports"
    with pytest.raises(continuity.InvalidInput, match="self_contained"):
        film.export(self_contained=True, progress=False)
    with pytest.raises(continuity.InvalidInput, match="timeline"):
        film.export(timeline="film.txt", progress=False)
    with pytest.raises(continuity.StudioError, match="approved"):
        film.export(progress=False)  # shot 1 has no approved take
    assert not (exports / "Lighthouse").exists()


# 6. Another worker holds the device.


def test_render_waits_for_a_worker_that_already_holds_the_device(
    api: continuity.Studio, photos: dict[str, Path]
) -> None:
    film = new_film(api, shot=photos["coffee"])
    worker = RenderWorker(api.core)
    stop = threading.Event()
    ran: list[int] = []
    thread = threading.Thread(target=lambda: ran.append(worker.run(stop=stop, poll_seconds=0.1)), daemon=True)
    thread.start()
    try:
        with pytest.raises(WorkerBusy):
            RenderWorker(api.core)  # the device is taken: render() cannot start its own worker
        made = film.render(takes=2, seed=5, progress=False)
    finally:
        stop.set()
        worker.wake()
        thread.join(10)
        worker.close()
    assert not thread.is_alive()
    assert [t.status for t in made] == ["done", "done"]
    assert all(t.video_path is not None and t.video_path.is_file() for t in made)
    assert ran == [2]  # the other worker rendered both


# 7. Progress.


def test_progress_bar_in_a_terminal_and_none_when_off(
    api: continuity.Studio, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    film = new_film(api, shot=photos["coffee"])
    capsys.readouterr()
    film.render(takes=1, seed=1, progress=True)
    drawn = capsys.readouterr()
    assert "rendering" in drawn.err and "take" in drawn.err and "1/1" in drawn.err
    assert drawn.out == ""

    film.render(takes=1, seed=2, progress=False)
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""
    assert len(film.takes(status="done")) == 2


# 8. Showing takes and tables.


def test_show_plays_a_take_inline_and_refuses_what_is_not_a_video(
    api: continuity.Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    from IPython.display import Video

    film = new_film(api, shot=photos["coffee"])
    (take,) = film.render(progress=False)
    player = continuity.show(take)
    assert isinstance(player, Video)
    assert "data:video/mp4;base64" in player._repr_html_()
    assert "data:video/mp4;base64" in film.show(take.id)._repr_html_()
    assert "data:video/mp4;base64" in continuity.show(take.video_path)._repr_html_()

    (queued,) = film.render(wait=False, progress=False)
    with pytest.raises(continuity.NotFound, match="has no video"):
        continuity.show(queued)
    with pytest.raises(continuity.NotFound, match="does not exist"):
        continuity.show(tmp_path / "missing.mp4")
    with pytest.raises(continuity.InvalidInput, match="cannot show int"):
        continuity.show(42)
    with pytest.raises(continuity.NotFound):
        film.show(10_000)


def test_table_aligns_text_and_escapes_html() -> None:
    table = Table(
        ("shot", "title", "score", "best"), [(1, "<script>alert(1)</script>", 0.91234, True), (12, "x", None, False)]
    )
    lines = repr(table).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("shot  title")
    starts = {line.index(value) for line, value in zip(lines, ("title", "<script>", "x"), strict=True)}
    assert starts == {6}  # every row's second column starts where its header does
    assert "0.912" in lines[1] and "yes" in lines[1] and "yes" not in lines[2]
    markup = table._repr_html_()
    assert "<script>" not in markup and "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert markup.count("<tr>") == 3 and "<th>title</th>" in markup


# 9. Weights.


def test_fetch_weights_links_a_local_model_folder(
    api: continuity.Studio, sana_wm_folder: Path, tmp_path: Path
) -> None:
    def available() -> dict[str, bool]:
        return {row[0]: row[2] for row in api.backends().rows if row[1] == "video"}

    assert available() == {"animatic": True, "sana-wm": False, "wan-i2v": False, "wan-vace": False}
    target = api.models_dir / "sana-wm"

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(continuity.InvalidInput, match=r"model_index\.json"):
        api.fetch_weights("sana-wm", empty)
    with pytest.raises(continuity.InvalidInput, match="must be one of"):
        api.fetch_weights("animatic", sana_wm_folder)
    with pytest.raises(continuity.InvalidInput, match="must be one of"):
        api.fetch_weights("sana-vm", sana_wm_folder)
    assert not target.exists() and not target.is_symlink()

    linked = api.fetch_weights("sana-wm", sana_wm_folder)
    assert linked == target and target.is_symlink() and target.resolve() == sana_wm_folder.resolve()
    assert available()["sana-wm"] is True
    assert api.fetch_weights("sana-wm", sana_wm_folder) == target  # linking the same folder again is fine

    other = tmp_path / "another-sana"
    other.mkdir()
    shutil.copy(sana_wm_folder / "model_index.json", other / "model_index.json")
    with pytest.raises(continuity.Conflict, match="already holds weights"):
        api.fetch_weights("sana-wm", other)
    assert target.resolve() == sana_wm_folder.resolve()


def test_fetch_weights_from_the_hub_offline_says_so(api: continuity.Studio, hf_offline: Path) -> None:
    with pytest.raises(continuity.StudioError, match="could not download someone/tiny-sana"):
        api.fetch_weights("sana-wm", "someone/tiny-sana")
    assert not (api.models_dir / "sana-wm").exists()
    assert list(hf_offline.iterdir()) == []


# 10. Serving the page.


def test_serve_refuses_a_public_link_without_credentials_and_serves_on_loopback(api: continuity.Studio) -> None:
    with pytest.raises(continuity.StudioError, match="without credentials"):
        api.serve(share=True)
    RenderWorker(api.core).close()  # nothing started: the device is still free

    server = api.serve(port=free_port())
    try:
        with urllib.request.urlopen(server.local_url, timeout=20) as response:
            assert response.status == 200
        with pytest.raises(continuity.StudioError, match="already served"):
            api.serve(port=free_port())
        with pytest.raises(WorkerBusy):
            RenderWorker(api.core)  # the page's worker holds the device
    finally:
        api.stop_serving()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.local_url, timeout=5)
    RenderWorker(api.core).close()  # its worker stopped too


def test_serve_on_a_port_that_is_taken_says_so_and_starts_nothing(api: continuity.Studio) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(continuity.StudioError, match=f"cannot serve on 127.0.0.1:{port}"):
            api.serve(port=port)
    RenderWorker(api.core).close()  # the page's worker was stopped again: the device is free
    server = api.serve(port=free_port())  # and the studio can still serve
    api.stop_serving()
    assert server.local_url.startswith("http://127.0.0.1:")


def test_exports_in_the_same_second_are_all_kept(api: continuity.Studio, photos: dict[str, Path]) -> None:
    film = new_film(api, shot=photos["coffee"])
    (take,) = film.render(progress=False)
    film.approve(take)
    made = [film.export(progress=False, contact_sheet=True) for _ in range(3)]
    films = {result.film.path for result in made}
    sheets = {result.contact_sheet.path for result in made if result.contact_sheet}
    assert len(films) == 3 and len(sheets) == 3
    assert all(path.is_file() for path in films | sheets)


def test_wait_takes_take_ids(
    api: continuity.Studio, other_api: continuity.Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    harbour = new_film(other_api, "Harbour", shot=photos["rocket"])
    harbour.render(takes=2, seed=1, progress=False)
    api.unpack(harbour.pack(tmp_path / "harbour.zip", takes="all").path)  # takes here without render jobs
    film = new_film(api, shot=photos["coffee"])
    queued = film.render(takes=2, seed=5, wait=False, progress=False)
    assert [t.id for t in queued] != [job.id for job in film.jobs()]
    done = api.wait([t.id for t in queued], progress=False)
    assert [(t.id, t.status, t.seed) for t in done] == [(t.id, "done", t.seed) for t in queued]


def test_a_model_stays_loaded_from_one_render_to_the_next(
    api: continuity.Studio, photos: dict[str, Path], sana_wm_folder: Path
) -> None:
    api.fetch_weights("sana-wm", sana_wm_folder)
    film = api.create_project("Lighthouse", width=64, height=64, fps=FPS)
    film.add_shot("The lighthouse at dusk", 1.0, keyframe=photos["coffee"], camera="dolly-in")
    first = film.render(backend="sana-wm", steps=1, seed=1, progress=False)
    second = film.render(backend="sana-wm", steps=1, seed=2, progress=False)
    assert [t.status for t in first + second] == ["done", "done"]
    assert api._cache.loads == 1 and len(api._cache) == 1
    api.close()
    assert len(api._cache) == 0  # closing the studio lets the model go


def test_render_until_the_cast_is_kept(api: continuity.Studio) -> None:
    photos = Path(__file__).parent / "photos"
    film = api.create_project("Kept", width=320, height=192, fps=8)
    film.add_character("Barack", references=[photos / "obama-1.jpg"])
    film.add_shot("Barack at the lectern", 1.0, characters=["Barack"], keyframe=photos / "obama-2.jpg")
    film.add_shot("Barack, or is it?", 1.0, characters=["Barack"], keyframe=photos / "biden-1.jpg")
    report = film.render_until("identity>=0.7", max_takes=2, seed=5, progress=False)
    assert [(s.shot_number, s.cleared, s.takes_rendered) for s in report.shots] == [(1, True, 1), (2, False, 2)]
    assert [s.shot_number for s in report.not_cleared] == [2]
    assert report.to_json()["not_cleared"] == [2]
    approved = [t.shot_number for t in film.takes() if t.approved]
    assert approved == [1]
    table = film.score().table()
    assert "cast" in table.columns and "look" in table.columns
    with pytest.raises(continuity.InvalidInput, match=r"must look like identity>=0\.7"):
        film.render_until("identity over 0.7", progress=False)
    assert len(film.takes()) == 3
