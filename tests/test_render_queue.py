"""The render queue end to end: queueing, the worker, cancel/retry/move, chaining, long shots, re-rendering.

Everything is real: a SQLite data directory in a temp folder, the animatic backend (and a tiny random SANA-WM
model for the diffusers path), H.264 files written by ffmpeg and checked with ffprobe. Projects are small
(64x64 or 128x80 at 8 fps, shots of 1-2 s) so a take renders in a fraction of a second.
"""

from __future__ import annotations

import errno
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import probes
import pytest
from PIL import Image
from sqlalchemy import event, func, select

import pipelines.video as video_module
import projects.worker as worker_module
from app.cli import main as cli_main
from pipelines.video import last_frame, read_frames
from pipelines.windows import render_long as real_render_long
from projects import cast, lifecycle, project, render_queue, storyboard, takes
from projects.errors import Conflict, InvalidInput, NotFound
from projects.render_queue import RenderSettings
from projects.studio import Studio
from projects.worker import RenderWorker, WorkerBusy
from storage.models import Job, MediaObject, Take

FPS = 8


# Helpers.


def make_project(studio: Studio, name: str = "Film", *, width: int = 64, height: int = 64, fps: int = FPS) -> str:
    project.create_project(studio, name, width=width, height=height, fps=fps)
    return name


def add_shot(studio: Studio, name: str, **fields: Any) -> storyboard.ShotInfo:
    values: dict[str, Any] = {"prompt": "a keeper climbs the lighthouse stairs", "duration": 1.0}
    values.update(fields)
    return storyboard.add_shot(studio, name, **values)


def run_all(studio: Studio) -> int:
    with RenderWorker(studio) as worker:
        return worker.run(once=True)


def row_counts(studio: Studio) -> tuple[int, int]:
    """(takes, jobs) in the whole database."""
    with studio.read() as session:
        take_count = session.scalar(select(func.count()).select_from(Take)) or 0
        job_count = session.scalar(select(func.count()).select_from(Job)) or 0
        return take_count, job_count


def source_take_id(studio: Studio, take_id: int) -> int | None:
    with studio.read() as session:
        return session.get(Take, take_id).source_take_id


def media_files(studio: Studio) -> set[str]:
    return {path.name for path in studio.media.stored_paths()}


def assert_store_clean(studio: Studio) -> None:
    """No half-written file anywhere: the temp folder is empty and every content file has its row."""
    assert sorted(p.name for p in studio.media.temp_dir.iterdir()) == []
    with studio.read() as session:
        known = set(session.scalars(select(MediaObject.sha256)))
    on_disk = {path.stem for path in studio.media.stored_paths()}
    assert on_disk <= known, f"files without a row: {on_disk - known}"


def ffprobe(path: Path) -> dict[str, Any]:
    """What ffprobe itself says (decoding every frame to count them), independent of pipelines.video."""
    entries = "stream=codec_name,width,height,nb_read_frames,avg_frame_rate"
    stream = probes.ffprobe(path, entries, count_frames=True, first_video=True)["streams"][0]
    return {
        "codec": stream["codec_name"],
        "width": int(stream["width"]),
        "height": int(stream["height"]),
        "frames": int(stream["nb_read_frames"]),
        "fps": stream["avg_frame_rate"],
    }


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stored_png(studio: Studio, sha256: str) -> np.ndarray:
    with Image.open(studio.media.path_for(sha256, "png")) as image:
        return np.asarray(image.convert("RGB"))


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli_main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture
def no_sana_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    cache = tmp_path / "empty-hf-cache"
    cache.mkdir()
    monkeypatch.delenv("CONTINUITY_MODEL_SANA_WM", raising=False)
    monkeypatch.delenv("CONTINUITY_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def sana_wm(monkeypatch: pytest.MonkeyPatch, sana_wm_folder: Path) -> Path:
    monkeypatch.setenv("CONTINUITY_MODEL_SANA_WM", str(sana_wm_folder))
    return sana_wm_folder


# 1. Queueing.


def test_queue_one_shot_a_list_and_all_shots_numbering_seeds_and_positions(
    studio: Studio, photos: dict[str, Path]
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, prompt="the lamp room at dusk")  # text only: the animatic draws a title card
    add_shot(studio, name, keyframe=photos["coffee"], camera="pan-left")

    one = render_queue.queue_renders(studio, name, shots=[2])
    assert [(j.shot_number, j.take_number, j.state) for j in one] == [(2, 1, "queued")]

    listed = render_queue.queue_renders(studio, name, shots=[3, 1], takes=2, seed=100)
    assert [(j.shot_number, j.take_number, j.seed) for j in listed] == [
        (3, 1, 100),
        (3, 2, 101),
        (1, 1, 100),
        (1, 2, 101),
    ]

    everything = render_queue.queue_renders(studio, name, takes=3)
    assert [j.shot_number for j in everything] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # Take numbers continue where each shot's earlier takes left off.
    assert [j.take_number for j in everything] == [3, 4, 5, 2, 3, 4, 3, 4, 5]
    # Seeds were drawn at random and recorded: distinct across takes, in range, stored on the takes too.
    random_seeds = [j.seed for j in everything]
    assert len(set(random_seeds)) == len(random_seeds)
    assert all(0 <= seed <= render_queue.MAX_SEED for seed in random_seeds)
    for job in everything:
        assert takes.get_take(studio, job.take_id).seed == job.seed

    all_jobs = one + listed + everything
    positions = [j.position for j in all_jobs]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [j.id for j in render_queue.list_jobs(studio, name)] == [j.id for j in all_jobs]
    page = takes.list_takes(studio, name, limit=100)
    assert page.total == 14
    assert {t.status for t in page.items} == {"queued"} and {t.backend for t in page.items} == {"animatic"}
    assert row_counts(studio) == (14, 14)


def test_a_later_high_priority_job_runs_first(studio: Studio) -> None:
    name = make_project(studio)
    for index in range(3):
        add_shot(studio, name, prompt=f"shot number {index + 1}")
    low = render_queue.queue_renders(studio, name, shots=[1, 2])
    urgent = render_queue.queue_renders(studio, name, shots=[3], priority=5)
    queued = render_queue.list_jobs(studio, name, states=["queued"])
    assert [j.id for j in queued] == [urgent[0].id, low[0].id, low[1].id]
    with RenderWorker(studio) as worker:
        order = [worker.run_next(), worker.run_next(), worker.run_next(), worker.run_next()]
    assert order == [urgent[0].id, low[0].id, low[1].id, None]


def test_listing_the_queue_reads_the_jobs_with_their_takes_and_shots_at_once(studio: Studio) -> None:
    """The Queue tab lists every job of a project every two seconds: a fixed number of statements, not one or two
    per job (2,000 jobs took 2,023 statements and 5 s)."""
    name = make_project(studio)
    for index in range(10):
        add_shot(studio, name, prompt=f"shot number {index + 1}", keyframe=None, continue_from_previous=index > 0)
    queued = render_queue.queue_renders(studio, name, takes=12, settings=RenderSettings(backend="animatic"))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(studio.db.engine, "before_cursor_execute", count)
    try:
        listed = render_queue.list_jobs(studio, name)
        by_id = render_queue.get_jobs(studio, [job.id for job in queued])
    finally:
        event.remove(studio.db.engine, "before_cursor_execute", count)
    assert len(listed) == len(by_id) == 120
    assert [(j.shot_number, j.take_number) for j in listed[:3]] == [(1, 1), (1, 2), (1, 3)]
    selects = [text for text in statements if text.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 4, len(selects)


def test_bad_requests_queue_nothing_and_say_why(studio: Studio, no_sana_weights: None) -> None:
    name = make_project(studio)
    add_shot(studio, name)
    add_shot(studio, name, prompt="the second shot")
    before = media_files(studio)

    with pytest.raises(NotFound, match="no project named 'Nope'"):
        render_queue.queue_renders(studio, "Nope")
    with pytest.raises(NotFound, match="has no shot 9; it has 2"):
        render_queue.queue_renders(studio, name, shots=[1, 9])  # shot 1 is fine, but nothing is queued
    for count in (0, 1000):
        with pytest.raises(InvalidInput, match="between 1 and 100 takes"):
            render_queue.queue_renders(studio, name, takes=count)
    with pytest.raises(InvalidInput, match=r"unknown backend 'nope'.*animatic"):
        render_queue.queue_renders(studio, name, settings=RenderSettings(backend="nope"))
    with pytest.raises(Conflict) as unavailable:
        render_queue.queue_renders(studio, name, settings=RenderSettings(backend="sana-wm"))
    message = str(unavailable.value)
    assert "sana-wm backend cannot run here" in message
    assert "no SANA-WM weights configured" in message and "CONTINUITY_MODEL_SANA_WM" in message

    assert row_counts(studio) == (0, 0)
    assert render_queue.list_jobs(studio) == []
    assert media_files(studio) == before


def test_a_keyframe_character_without_references_is_refused(studio: Studio, photos: dict[str, Path]) -> None:
    name = make_project(studio)
    cast.add_character(studio, name, "Mara", description="a red-haired keeper")
    add_shot(studio, name, keyframe=photos["astronaut"])
    add_shot(studio, name, keyframe_character="Mara")
    with pytest.raises(InvalidInput, match=r"shot 2: .*Mara's first reference image, but Mara has none"):
        render_queue.queue_renders(studio, name, takes=2)
    assert row_counts(studio) == (0, 0)
    # Once Mara has a reference, the same request queues.
    mara = cast.list_characters(studio, name)[0]
    cast.add_reference(studio, mara.id, photos["chelsea"])
    assert len(render_queue.queue_renders(studio, name, takes=2)) == 4


def test_sana_wm_checks_keyframes_and_camera_paths_before_queueing(
    studio: Studio, photos: dict[str, Path], sana_wm: Path
) -> None:
    name = make_project(studio)
    sana = RenderSettings(backend="sana-wm", steps=2)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")  # 1 s at 8 fps = 8 frames
    add_shot(studio, name, camera="dolly-in")  # no keyframe, does not continue
    add_shot(studio, name, keyframe=photos["coffee"], camera="w-7")  # 7 steps: fits 8 frames, not SANA-WM's stride
    add_shot(studio, name, keyframe=photos["coffee"], camera="w-9")  # 9 steps for 8 frames
    add_shot(studio, name, camera="pan-left", continue_from_previous=True)  # starts where shot 4 ends

    with pytest.raises(InvalidInput, match="shot 2: it has no keyframe and nothing to continue from; SANA-WM"):
        render_queue.queue_renders(studio, name, shots=[1, 2], settings=sana)
    with pytest.raises(InvalidInput, match=r"shot 3: .*'w-7' is 7 steps.*multiple of 8 steps") as stride:
        render_queue.queue_renders(studio, name, shots=[3], settings=sana)
    assert "8*k+1" in str(stride.value)
    four = r"shot 4: the camera path 'w-9' is 9 steps but the shot has 8 frames \(7 steps\).*\(1 s at 8 fps\)"
    with pytest.raises(InvalidInput, match=four):
        render_queue.queue_renders(studio, name, shots=[4], settings=sana)
    assert row_counts(studio) == (0, 0)

    # What can run is queued: a preset camera with a keyframe, and a shot that continues from another.
    assert [j.shot_number for j in render_queue.queue_renders(studio, name, shots=[1, 5], settings=sana)] == [1, 5]
    # The animatic draws text-only shots, so shot 2 is fine there.
    assert len(render_queue.queue_renders(studio, name, shots=[2])) == 1
    assert row_counts(studio) == (3, 3)


# 2. Rendering a storyboard.


def storyboard_project(studio: Studio, photos: dict[str, Path], name: str = "Lighthouse") -> str:
    make_project(studio, name, width=128, height=80)
    add_shot(studio, name, title="Arrival", keyframe=photos["astronaut"], camera="dolly-in", duration=1.0)
    add_shot(studio, name, title="Stairs", camera="pan-right", duration=1.0, continue_from_previous=True)
    add_shot(studio, name, title="Coffee", keyframe=photos["coffee"], camera="static", duration=2.0)
    return name


def check_rendered_take(studio: Studio, take: takes.TakeInfo, shot: storyboard.ShotInfo, fps: int) -> None:
    expected_frames = round(shot.duration * fps)
    assert take.status == "done" and take.error is None
    assert take.num_frames == expected_frames
    assert take.video_path is not None and take.video_path.suffix == ".mp4"
    seen = ffprobe(take.video_path)
    assert seen == {
        "codec": "h264",
        "width": take.width,
        "height": take.height,
        "frames": expected_frames,
        "fps": f"{fps}/1",
    }
    assert file_sha256(take.video_path) == take.video_sha256
    assert take.thumbnail_path is not None and take.thumbnail_path.is_file()
    with Image.open(take.thumbnail_path) as thumb:
        assert thumb.format == "PNG" and thumb.size == (take.width, take.height)
    prov = take.provenance
    assert prov["backend"] == "animatic" and prov["seed"] == take.seed
    assert prov["video"]["sha256"] == take.video_sha256
    assert len(prov["frames_sha256"]) == 64 and prov["frames_sha256"] != take.video_sha256
    assert prov["device"] == "cpu" and "python" in prov["libraries"]
    assert take.timings["render"] > 0 and take.timings["encode"] > 0
    if shot.keyframe.sha256 is not None:
        assert prov["inputs"] == {"keyframe": shot.keyframe.sha256}
        assert prov["source_take_id"] is None


def test_worker_renders_a_whole_storyboard_with_provenance(studio: Studio, photos: dict[str, Path]) -> None:
    name = storyboard_project(studio, photos)
    jobs = render_queue.queue_renders(studio, name, takes=2, seed=7)
    assert run_all(studio) == 6
    assert {j.state for j in render_queue.list_jobs(studio, name)} == {"done"}
    shots = storyboard.list_shots(studio, name).items
    page = takes.list_takes(studio, name)
    assert [(t.shot_number, t.take_number) for t in page.items] == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
    for take in page.items:
        check_rendered_take(studio, take, shots[take.shot_number - 1], FPS)
    # Different seeds make different takes of the moving shots.
    assert page.items[0].provenance["frames_sha256"] != page.items[1].provenance["frames_sha256"]
    # Shot 2 started on the last frame of shot 1's newest take, stored as a PNG input.
    newest_of_shot_1 = page.items[1]
    for chained in page.items[2:4]:
        assert chained.provenance["source_take_id"] == newest_of_shot_1.id
        keyframe_sha = chained.provenance["inputs"]["keyframe"]
        assert np.array_equal(stored_png(studio, keyframe_sha), np.asarray(last_frame(newest_of_shot_1.video_path)))
    assert [j.take_id for j in jobs] == [t.id for t in page.items]
    assert_store_clean(studio)


def test_cli_renders_the_storyboard_and_reports_status_and_queue(
    studio: Studio, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name = storyboard_project(studio, photos)
    data = str(studio.data_dir)
    code, payload = cli_json(capsys, "render", name, "--all", "--takes", "2", "--wait", "--json", "--data-dir", data)
    assert code == 0
    assert len(payload["jobs"]) == 6 and {j["state"] for j in payload["jobs"]} == {"done"}
    assert [(t["shot_number"], t["take_number"]) for t in payload["takes"]] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (3, 1),
        (3, 2),
    ]
    shots = storyboard.list_shots(studio, name).items
    for shown in payload["takes"]:
        take = takes.get_take(studio, shown["id"])
        assert shown["video"] == str(take.video_path) and shown["status"] == "done"
        check_rendered_take(studio, take, shots[take.shot_number - 1], FPS)
    # Seeds were random (no --seed) and each take recorded its own.
    seeds = [t["seed"] for t in payload["takes"]]
    assert len(set(seeds)) == len(seeds)

    code, status = cli_json(capsys, "status", name, "--json", "--data-dir", data)
    assert code == 0
    assert [s["number"] for s in status["shot_takes"]] == [1, 2, 3]
    assert status["takes"]["done"] == 6 and status["shots_missing_approval"] == [1, 2, 3]
    by_id = {t["id"]: t for t in payload["takes"]}
    for shot in status["shot_takes"]:
        assert shot["stale"] is False and len(shot["takes"]) == 2
        for summary in shot["takes"]:
            full = by_id[summary["id"]]
            assert summary["status"] == "done" and summary["approved"] is False
            assert summary["seed"] == full["seed"] and summary["backend"] == "animatic"
            assert summary["video"] == full["video"] and Path(summary["video"]).is_file()

    code, queue = cli_json(capsys, "queue", name, "--json", "--data-dir", data)
    assert code == 0
    assert [j["id"] for j in queue["jobs"]] == [j["id"] for j in payload["jobs"]]
    assert {j["state"] for j in queue["jobs"]} == {"done"}
    assert all(j["progress"] == {"stage": "done", "step": 1, "total": 1} for j in queue["jobs"])


def test_cli_render_exits_1_when_a_take_fails(
    studio: Studio, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"])
    add_shot(studio, name, continue_from_previous=True)
    data = str(studio.data_dir)
    code, payload = cli_json(capsys, "render", name, "--shot", "2", "--wait", "--json", "--data-dir", data)
    assert code == 1
    assert payload["jobs"][0]["state"] == "failed" and "shot 1" in payload["jobs"][0]["error"]


# 3. A failing job does not stop the queue.


def test_a_chained_shot_without_a_source_fails_and_the_queue_goes_on_then_retry(
    studio: Studio, photos: dict[str, Path]
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, camera="pan-left", continue_from_previous=True)
    add_shot(studio, name, keyframe=photos["coffee"])
    first, second, third = render_queue.queue_renders(studio, name, seed=3)
    render_queue.cancel_job(studio, first.id)
    assert run_all(studio) == 2  # the cancelled job is not claimed

    failed = render_queue.get_job(studio, second.id)
    assert failed.state == "failed"
    assert "shot 2 continues from shot 1" in failed.error and "render shot 1 first" in failed.error
    failed_take = takes.get_take(studio, second.take_id)
    assert failed_take.status == "failed" and failed_take.error == failed.error and failed_take.video_path is None
    assert takes.get_take(studio, third.take_id).status == "done"
    assert_store_clean(studio)

    # Retry both: same takes, same seeds, queued at the end in retry order; shot 1 first this time.
    again_1 = render_queue.retry_job(studio, first.id)
    again_2 = render_queue.retry_job(studio, second.id)
    assert (again_1.state, again_1.take_id, again_1.seed) == ("queued", first.take_id, 3)
    assert (again_2.state, again_2.take_id, again_2.seed, again_2.error) == ("queued", second.take_id, 3, None)
    assert again_2.position > again_1.position > third.position
    assert takes.get_take(studio, second.take_id).status == "queued"
    assert run_all(studio) == 2
    done = takes.get_take(studio, second.take_id)
    assert done.status == "done" and done.take_number == 1 and done.num_frames == 8
    assert done.provenance["source_take_id"] == first.take_id
    with pytest.raises(Conflict, match="only a failed or cancelled job can be retried"):
        render_queue.retry_job(studio, second.id)


def test_a_full_disk_fails_one_take_leaves_no_file_and_the_next_job_runs(
    studio: Studio, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    first, second = render_queue.queue_renders(studio, name, takes=2, seed=11)
    real_write = video_module.write_mp4  # takes are encoded by pipelines.video.encode_take
    calls: list[Path] = []

    def full_disk(frames: np.ndarray, fps: int, path: Path, **kwargs: Any) -> Any:
        calls.append(Path(path))
        if len(calls) == 1:
            Path(path).write_bytes(b"\x00\x00\x00\x18ftypisom")  # a few bytes, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(frames, fps, path, **kwargs)

    monkeypatch.setattr(video_module, "write_mp4", full_disk)
    before = media_files(studio)
    with RenderWorker(studio) as worker:
        assert worker.run_next() == first.id
        job = render_queue.get_job(studio, first.id)
        assert job.state == "failed" and "disk is full" in job.error
        take = takes.get_take(studio, first.take_id)
        assert take.status == "failed" and "disk is full" in take.error and take.video_path is None
        assert not calls[0].exists()
        assert media_files(studio) == before
        assert_store_clean(studio)
        assert worker.run_next() == second.id
    assert takes.get_take(studio, second.take_id).status == "done"
    assert_store_clean(studio)


# 4. Cancel, retry, move.


def test_cancel_a_queued_job(studio: Studio) -> None:
    name = make_project(studio)
    add_shot(studio, name)
    first, second = render_queue.queue_renders(studio, name, takes=2)
    cancelled = render_queue.cancel_job(studio, first.id)
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    take = takes.get_take(studio, first.take_id)
    assert take.status == "cancelled" and take.video_path is None
    with pytest.raises(Conflict, match="already cancelled"):
        render_queue.cancel_job(studio, first.id)
    assert run_all(studio) == 1
    assert render_queue.get_job(studio, second.id).state == "done"
    with pytest.raises(Conflict, match="already done"):
        render_queue.cancel_job(studio, second.id)
    with pytest.raises(NotFound):
        render_queue.cancel_job(studio, 999)


def test_cancel_a_running_job_then_retry_it(
    studio: Studio, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in", duration=4.0)  # 32 frames
    (job,) = render_queue.queue_renders(studio, name, seed=21)
    started, cancel_sent = threading.Event(), threading.Event()

    def gated(backend: Any, request: Any, *, progress: Any, cancel: Any) -> Any:
        def hooked(stage: str, step: int, total: int) -> None:
            progress(stage, step, total)
            if not started.is_set():  # hold the render after its first frame until the cancel is in
                started.set()
                assert cancel_sent.wait(30)

        return real_render_long(backend, request, progress=hooked, cancel=cancel)

    monkeypatch.setattr(worker_module, "render_long", gated)
    monkeypatch.setattr(worker_module, "PROGRESS_INTERVAL", 0.0)
    with RenderWorker(studio) as worker:
        thread = threading.Thread(target=worker.run, kwargs={"once": True})
        thread.start()
        try:
            assert started.wait(30)
            running = render_queue.get_job(studio, job.id)
            assert running.state == "running" and running.stage == "animatic" and running.step == 1
            asked = render_queue.cancel_job(studio, job.id)
            assert asked.state == "running" and asked.cancel_requested
        finally:
            cancel_sent.set()
            thread.join(30)
        assert not thread.is_alive()
    ended = render_queue.get_job(studio, job.id)
    assert ended.state == "cancelled" and "cancelled after" in ended.error and "of 32 frames" in ended.error
    take = takes.get_take(studio, job.take_id)
    assert take.status == "cancelled" and take.video_path is None and take.video_sha256 is None
    assert take.thumbnail_path is None
    assert_store_clean(studio)

    monkeypatch.setattr(worker_module, "render_long", real_render_long)
    again = render_queue.retry_job(studio, job.id)
    assert (again.state, again.take_id, again.seed, again.cancel_requested) == ("queued", job.take_id, 21, False)
    assert run_all(studio) == 1
    done = takes.get_take(studio, job.take_id)
    assert done.status == "done" and done.seed == 21 and ffprobe(done.video_path)["frames"] == 32
    assert render_queue.get_job(studio, job.id).attempts == 1


def test_a_cancel_that_arrives_while_the_video_is_written_keeps_nothing(
    studio: Studio, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    (job,) = render_queue.queue_renders(studio, name)
    real_write = video_module.write_mp4  # takes are encoded by pipelines.video.encode_take
    before = media_files(studio)

    def write_then_cancel(frames: np.ndarray, fps: int, path: Path, **kwargs: Any) -> Any:
        info = real_write(frames, fps, path, **kwargs)
        render_queue.cancel_job(studio, job.id)  # the render is over; the rows are not written yet
        return info

    monkeypatch.setattr(video_module, "write_mp4", write_then_cancel)
    assert run_all(studio) == 1
    ended = render_queue.get_job(studio, job.id)
    assert ended.state == "cancelled" and "while the video was being written" in ended.error
    assert takes.get_take(studio, job.take_id).video_path is None
    assert media_files(studio) == before
    assert_store_clean(studio)


def test_move_job_changes_the_run_order(studio: Studio) -> None:
    name = make_project(studio)
    add_shot(studio, name)
    a, b, c, d = render_queue.queue_renders(studio, name, takes=4)
    moved = render_queue.move_job(studio, d.id, before=b.id)
    assert moved.position < render_queue.get_job(studio, b.id).position
    assert [j.id for j in render_queue.list_jobs(studio, name, states=["queued"])] == [a.id, d.id, b.id, c.id]
    raised = render_queue.move_job(studio, c.id, priority=3)
    assert raised.priority == 3
    assert [j.id for j in render_queue.list_jobs(studio, name, states=["queued"])] == [c.id, a.id, d.id, b.id]
    with pytest.raises(InvalidInput, match="cannot move before itself"):
        render_queue.move_job(studio, a.id, before=a.id)
    with pytest.raises(InvalidInput, match="from -1000 to 1000"):
        render_queue.move_job(studio, a.id, priority=5000)
    with RenderWorker(studio) as worker:
        order = [worker.run_next() for _ in range(4)]
    assert order == [c.id, a.id, d.id, b.id]
    with pytest.raises(Conflict, match="only queued jobs can be moved"):
        render_queue.move_job(studio, a.id, before=b.id)
    with pytest.raises(Conflict):
        render_queue.move_job(studio, b.id, priority=1)


# 5. Chaining and staleness.


def test_chaining_follows_the_newest_then_the_approved_take_and_marks_stale(
    studio: Studio, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, camera="pan-right", continue_from_previous=True)
    add_shot(studio, name, keyframe=photos["coffee"])  # does not continue: never stale
    render_queue.queue_renders(studio, name, shots=[1], takes=2, seed=1)
    run_all(studio)
    take_1, take_2 = takes.list_takes(studio, name, shot_number=1).items
    last_1 = np.asarray(last_frame(take_1.video_path))
    last_2 = np.asarray(last_frame(take_2.video_path))
    assert not np.array_equal(last_1, last_2)  # the two takes end differently, so the source is told apart

    # None approved: shot 2 starts on the newest take's last frame.
    (job,) = render_queue.queue_renders(studio, name, shots=[2], seed=5)
    run_all(studio)
    from_newest = takes.get_take(studio, job.take_id)
    assert source_take_id(studio, from_newest.id) == take_2.id
    assert np.array_equal(stored_png(studio, from_newest.provenance["inputs"]["keyframe"]), last_2)
    assert project.project_status(studio, name).shots[1].stale is False

    # Approving take 1 changes where shot 2 would start: its current take is now stale.
    takes.approve_take(studio, take_1.id)
    status = project.project_status(studio, name)
    assert [s.stale for s in status.shots] == [False, True, False]

    (job,) = render_queue.queue_renders(studio, name, shots=[2], seed=5)
    run_all(studio)
    from_approved = takes.get_take(studio, job.take_id)
    assert from_approved.take_number == 2
    assert source_take_id(studio, from_approved.id) == take_1.id
    assert from_approved.provenance["source_take_id"] == take_1.id
    keyframe = stored_png(studio, from_approved.provenance["inputs"]["keyframe"])
    assert np.array_equal(keyframe, last_1)
    # The chained take's first frame is the source's last frame (through H.264, so closely).
    first = read_frames(from_approved.video_path)[0].astype(int)
    assert np.abs(first - last_1.astype(int)).mean() < np.abs(first - last_2.astype(int)).mean()
    assert np.abs(first - last_1.astype(int)).mean() < 4
    assert [s.stale for s in project.project_status(studio, name).shots] == [False, False, False]

    # Approving the other take of shot 1 makes shot 2 stale again, in the CLI's status too.
    takes.approve_take(studio, take_2.id)
    assert project.project_status(studio, name).shots[1].stale is True
    code, shown = cli_json(capsys, "status", name, "--json", "--data-dir", str(studio.data_dir))
    assert code == 0 and [s["stale"] for s in shown["shot_takes"]] == [False, True, False]
    (job,) = render_queue.queue_renders(studio, name, shots=[2])
    run_all(studio)
    assert source_take_id(studio, job.take_id) == take_2.id
    assert project.project_status(studio, name).shots[1].stale is False


# 6. A shot longer than one pass.


def test_a_long_shot_renders_in_windows_to_its_exact_length(studio: Studio, photos: dict[str, Path]) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in", duration=70.0)  # 560 frames > 481
    (job,) = render_queue.queue_renders(studio, name, seed=2)
    assert run_all(studio) == 1
    take = takes.get_take(studio, job.take_id)
    assert take.status == "done", take.error
    assert take.num_frames == 560
    assert ffprobe(take.video_path)["frames"] == 560
    generation = take.params["generation"]
    windows = generation["windows"]
    assert len(windows) == 2 and max(windows) <= 481 and 1 + sum(n - 1 for n in windows) == 560
    assert generation["window_seeds"] == [2, 3] and generation["num_frames"] == 560
    assert any("rendered in 2 windows" in note for note in take.params["notes"])


# 7. Rendering a take again.


def test_render_again_repeats_a_take_bit_for_bit(
    studio: Studio, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name = make_project(studio)
    add_shot(studio, name, title="Arrival", keyframe=photos["astronaut"], camera="orbit-left")
    (job,) = render_queue.queue_renders(studio, name)  # a random seed
    with pytest.raises(Conflict, match="only a finished take can be rendered again"):
        render_queue.render_again(studio, job.take_id)
    run_all(studio)
    original = takes.get_take(studio, job.take_id)

    again = render_queue.render_again(studio, original.id)
    assert again.take_id != original.id and again.take_number == 2 and again.seed == original.seed
    assert run_all(studio) == 1
    copy = takes.get_take(studio, again.take_id)
    assert copy.provenance["frames_sha256"] == original.provenance["frames_sha256"]
    assert copy.video_sha256 == original.video_sha256
    assert copy.provenance["inputs"] == original.provenance["inputs"]
    assert copy.params["pinned_inputs"]["from_take_id"] == original.id

    code, payload = cli_json(
        capsys, "rerender", str(original.id), "--wait", "--json", "--data-dir", str(studio.data_dir)
    )
    assert code == 0
    (made,) = payload["takes"]
    assert made["take_number"] == 3 and made["status"] == "done" and made["seed"] == original.seed
    assert made["provenance"]["frames_sha256"] == original.provenance["frames_sha256"]
    assert made["video_sha256"] == original.video_sha256

    # Only finished takes: a cancelled one is refused too, and nothing is queued.
    (queued,) = render_queue.queue_renders(studio, name)
    render_queue.cancel_job(studio, queued.id)
    counts = row_counts(studio)
    with pytest.raises(Conflict, match="is cancelled"):
        render_queue.render_again(studio, queued.take_id)
    assert row_counts(studio) == counts


def test_a_chained_take_rendered_again_keeps_its_pinned_keyframe(studio: Studio, photos: dict[str, Path]) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, camera="tilt-up", continue_from_previous=True)
    render_queue.queue_renders(studio, name, shots=[1], takes=2, seed=1)
    run_all(studio)
    take_1, take_2 = takes.list_takes(studio, name, shot_number=1).items
    (job,) = render_queue.queue_renders(studio, name, shots=[2], seed=9)
    run_all(studio)
    chained = takes.get_take(studio, job.take_id)
    assert chained.provenance["source_take_id"] == take_2.id

    takes.approve_take(studio, take_1.id)  # a fresh render of shot 2 would now start from take 1
    again = render_queue.render_again(studio, chained.id)
    run_all(studio)
    copy = takes.get_take(studio, again.take_id)
    assert copy.status == "done"
    assert copy.provenance["inputs"] == chained.provenance["inputs"]
    assert copy.provenance["source_take_id"] == take_2.id == source_take_id(studio, copy.id)
    assert copy.provenance["frames_sha256"] == chained.provenance["frames_sha256"]
    assert copy.video_sha256 == chained.video_sha256


def test_render_again_after_the_shot_title_changed_still_repeats_the_take(
    studio: Studio, photos: dict[str, Path]
) -> None:
    name = make_project(studio)
    shot = add_shot(studio, name, title="Arrival", keyframe=photos["astronaut"], camera="dolly-in")
    (job,) = render_queue.queue_renders(studio, name, seed=3)
    run_all(studio)
    original = takes.get_take(studio, job.take_id)
    storyboard.update_shot(studio, shot.id, title="Departure")
    again = render_queue.render_again(studio, original.id)
    run_all(studio)
    copy = takes.get_take(studio, again.take_id)
    assert copy.params["title"] == "Arrival"
    assert copy.provenance["frames_sha256"] == original.provenance["frames_sha256"]


def test_takes_of_a_static_shot_with_other_seeds_differ(studio: Studio) -> None:
    name = make_project(studio)
    add_shot(studio, name, prompt="the lamp room at dusk", camera="static")  # text only: a title card
    render_queue.queue_renders(studio, name, takes=2, seed=5)
    run_all(studio)
    one, two = takes.list_takes(studio, name).items
    assert (one.seed, two.seed) == (5, 6)
    assert one.provenance["frames_sha256"] != two.provenance["frames_sha256"]


# 8. A diffusers backend through the queue.


def test_sana_wm_takes_through_the_queue_load_the_pipeline_once(
    studio: Studio, photos: dict[str, Path], sana_wm: Path
) -> None:
    name = make_project(studio)
    shot = add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")  # 8 frames
    jobs = render_queue.queue_renders(
        studio, name, takes=2, seed=4, settings=RenderSettings(backend="sana-wm", steps=2)
    )
    assert [j.backend for j in jobs] == ["sana-wm", "sana-wm"]
    with RenderWorker(studio) as worker:
        assert worker.run(once=True) == 2
        assert worker.cache.loads == 1
    made = [takes.get_take(studio, j.take_id) for j in jobs]
    for take, seed in zip(made, (4, 5), strict=True):
        assert take.status == "done", take.error
        assert take.backend == "sana-wm" and take.seed == seed
        # 8 frames snap up to SANA-WM's 8k+1: the take records what it holds, and what was asked for.
        assert take.num_frames == 9 and take.params["requested_frames"] == 8
        assert any("8 frames snapped to 9" in note for note in take.params["notes"])
        seen = ffprobe(take.video_path)
        assert (seen["frames"], seen["width"], seen["height"]) == (9, 64, 64)
        assert file_sha256(take.video_path) == take.video_sha256
        prov = take.provenance
        assert prov["backend"] == "sana-wm" and prov["seed"] == seed
        assert prov["load_spec"]["source"] == str(sana_wm)
        # The weight files by path, each with its size and the digest of its safetensors header.
        files = prov["model_files"]
        assert any(key.startswith("transformer/") for key in files) and all(k.endswith(".safetensors") for k in files)
        assert all(files[key].startswith(f"size:{(sana_wm / key).stat().st_size} header:") for key in files)
        assert prov["inputs"] == {"keyframe": shot.keyframe.sha256}
        assert "torch" in prov["libraries"] and "diffusers" in prov["libraries"]
        assert take.params["generation"]["steps"] == 2
    assert made[0].provenance["frames_sha256"] != made[1].provenance["frames_sha256"]
    assert_store_clean(studio)


# Crash recovery and the device lock.


def test_an_interrupted_job_is_requeued_once_then_failed(studio: Studio) -> None:
    name = make_project(studio)
    add_shot(studio, name)
    (job,) = render_queue.queue_renders(studio, name)

    def leave_running(job_id: int, attempts: int) -> None:
        """A worker on the CPU claims the job and dies, ``attempts`` times."""
        for attempt in range(attempts):
            with studio.write() as session:
                if attempt:
                    lifecycle.recover(session, {"cpu"})
                assert lifecycle.claim(session, worker="gone", device="cpu").id == job_id

    leave_running(job.id, 1)
    with RenderWorker(studio) as worker:
        assert worker.recovered == [job.id]
        requeued = render_queue.get_job(studio, job.id)
        assert requeued.state == "queued" and "queued again" in requeued.error
        assert takes.get_take(studio, job.take_id).status == "queued"
        with pytest.raises(WorkerBusy, match="already running for device cpu"):
            RenderWorker(studio)
        assert worker.run(once=True) == 1
    assert takes.get_take(studio, job.take_id).status == "done"

    (second,) = render_queue.queue_renders(studio, name)
    leave_running(second.id, 2)
    with RenderWorker(studio) as worker:
        assert worker.recovered == [second.id]
        assert worker.run(once=True) == 0
    failed = render_queue.get_job(studio, second.id)
    assert failed.state == "failed" and "stopped 2 times" in failed.error
    assert takes.get_take(studio, second.take_id).status == "failed"


def test_cli_queue_cancel_retry_and_worker(
    studio: Studio, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, prompt="the lamp room at dusk")
    data = str(studio.data_dir)
    code, queued = cli_json(capsys, "render", name, "--shots", "1-2", "--seed", "40", "--json", "--data-dir", data)
    assert code == 0
    assert [(j["shot_number"], j["seed"], j["state"]) for j in queued["jobs"]] == [
        (1, 40, "queued"),
        (2, 40, "queued"),
    ]
    first, second = (j["id"] for j in queued["jobs"])

    code, cancelled = cli_json(capsys, "cancel", str(first), "--json", "--data-dir", data)
    assert code == 0 and cancelled["job"]["state"] == "cancelled"
    code, refused = cli_json(capsys, "cancel", str(first), "--json", "--data-dir", data)
    assert code == 1 and refused["error"]["type"] == "Conflict"
    code, retried = cli_json(capsys, "retry", str(first), "--json", "--data-dir", data)
    assert code == 0 and retried["job"]["state"] == "queued" and retried["job"]["seed"] == 40

    code, ran = cli_json(capsys, "worker", "--once", "--json", "--data-dir", data)
    assert code == 0 and ran == {"jobs_run": 2, "recovered": []}
    code, queue = cli_json(capsys, "queue", name, "--json", "--data-dir", data)
    assert [(j["id"], j["state"]) for j in queue["jobs"]] == [(second, "done"), (first, "done")]

    code, bad = cli_json(capsys, "render", name, "--shots", "2-5", "--json", "--data-dir", data)
    assert code == 1 and "has no shot 3" in bad["error"]["message"]
    assert row_counts(studio) == (2, 2)


def test_a_long_shot_follows_an_explicit_camera_path_across_windows(studio: Studio, photos: dict[str, Path]) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="w-300,none-259", duration=70.0)
    (job,) = render_queue.queue_renders(studio, name, seed=2)
    run_all(studio)
    take = takes.get_take(studio, job.take_id)
    assert take.status == "done", take.error
    assert ffprobe(take.video_path)["frames"] == 560
    cameras = take.params["generation"]["window_cameras"]
    assert cameras == ["w-280", "w-20,none-259"]


# Findings: behaviour that looks wrong, kept as strict expected failures until fixed.


def test_a_cancel_requested_before_a_crash_is_honoured_by_recovery(studio: Studio) -> None:
    name = make_project(studio)
    add_shot(studio, name)
    (job,) = render_queue.queue_renders(studio, name)
    with studio.write() as session:
        lifecycle.claim(session, worker="gone", device="cpu")
    assert render_queue.cancel_job(studio, job.id).cancel_requested  # the worker died before it read the flag
    with RenderWorker(studio):
        pass
    assert render_queue.get_job(studio, job.id).state == "cancelled"


def test_seeds_counted_up_from_the_first_stay_in_range(studio: Studio) -> None:
    name = make_project(studio)
    add_shot(studio, name)
    try:
        jobs = render_queue.queue_renders(studio, name, seed=render_queue.MAX_SEED, takes=3)
    except InvalidInput:
        assert row_counts(studio) == (0, 0)
        return
    assert all(0 <= job.seed <= render_queue.MAX_SEED for job in jobs)


def test_a_seed_past_the_largest_is_refused(studio: Studio) -> None:
    name = make_project(studio)
    add_shot(studio, name)
    too_big = render_queue.MAX_SEED + 1
    with pytest.raises(InvalidInput, match=f"from 0 to {render_queue.MAX_SEED}"):
        render_queue.queue_renders(studio, name, seed=too_big)
    assert row_counts(studio) == (0, 0)


def chained_pair(studio: Studio, photos: dict[str, Path]) -> tuple[str, list[takes.TakeInfo]]:
    """Shot 1 with two takes; shot 2 continues from it and was rendered from take 2 (the newest)."""
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, camera="pan-left", continue_from_previous=True)
    render_queue.queue_renders(studio, name, shots=[1], takes=2, seed=1)
    run_all(studio)
    render_queue.queue_renders(studio, name, shots=[2], seed=1)
    run_all(studio)
    made = list(takes.list_takes(studio, name).items)
    assert made[2].provenance["source_take_id"] == made[1].id
    return name, made


def test_deleting_the_source_take_marks_the_next_shot_stale(studio: Studio, photos: dict[str, Path]) -> None:
    name, made = chained_pair(studio, photos)
    takes.delete_take(studio, made[1].id)  # shot 2 would now start from take 1
    assert project.project_status(studio, name).shots[1].stale is True


def test_moving_a_chained_shot_marks_it_stale(studio: Studio, photos: dict[str, Path]) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, keyframe=photos["coffee"], camera="dolly-in")
    chained = add_shot(studio, name, camera="pan-left", continue_from_previous=True)
    render_queue.queue_renders(studio, name, seed=1)
    run_all(studio)
    storyboard.move_shot(studio, chained.id, 2)  # it continued from the coffee shot, now from the astronaut
    assert [s.stale for s in project.project_status(studio, name).shots] == [False, True, False]


def test_inserting_a_shot_before_a_chained_one_marks_it_stale(studio: Studio, photos: dict[str, Path]) -> None:
    name = make_project(studio)
    add_shot(studio, name, keyframe=photos["astronaut"], camera="dolly-in")
    add_shot(studio, name, camera="pan-left", continue_from_previous=True)
    render_queue.queue_renders(studio, name, seed=1)
    run_all(studio)
    assert [s.stale for s in project.project_status(studio, name).shots] == [False, False]
    add_shot(studio, name, keyframe=photos["coffee"], position=2)  # the chained shot now follows the coffee cup
    assert [s.stale for s in project.project_status(studio, name).shots] == [False, False, True]
    add_shot(studio, name, keyframe=photos["rocket"])  # at the end: nothing after it changes
    assert [s.stale for s in project.project_status(studio, name).shots] == [False, False, True, False]


def test_deleting_the_previous_shot_clears_a_stale_mark(studio: Studio, photos: dict[str, Path]) -> None:
    name, made = chained_pair(studio, photos)
    takes.approve_take(studio, made[0].id)
    assert project.project_status(studio, name).shots[1].stale is True
    storyboard.delete_shot(studio, made[0].shot_id)
    assert [s.stale for s in project.project_status(studio, name).shots] == [False]


def test_a_long_storyboard_is_queued_in_short_transactions(
    studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from projects.storyboard_file import import_storyboard

    board = tmp_path / "board.csv"
    board.write_text("prompt,duration\n" + "".join(f"shot {n},1\n" for n in range(210)))
    import_storyboard(studio, board, project="Long")
    writes = []
    real_write = studio.write

    def counted_write():  # type: ignore[no-untyped-def]
        writes.append(1)
        return real_write()

    monkeypatch.setattr(studio, "write", counted_write)
    jobs = render_queue.queue_renders(studio, "Long", takes=2, seed=3)
    assert len(jobs) == 420 and [j.shot_number for j in jobs[:4]] == [1, 1, 2, 2]
    assert len({j.position for j in jobs}) == 420 and jobs == sorted(jobs, key=lambda j: j.position)
    assert len(writes) == -(-420 // render_queue.QUEUE_BATCH) == 3  # a batch of takes per write, not one long write
