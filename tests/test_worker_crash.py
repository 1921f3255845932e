"""Crash safety of the render worker, with real worker processes killed at awkward moments.

docs/ARCHITECTURE.md (the life of a take): a crash or kill at any moment loses no committed take and leaves no
half-written file visible. Each test sets a project up through the services in this process, runs
``python app.py worker`` as a child process on the same data directory, kills it (SIGKILL, as the OOM killer or
``kill -9`` does; or SIGTERM, as a service manager does) and then reads the database through the services and the
media store from disk.

What a kill leaves, as found here:

- the job and its take still say ``running`` (nothing can record a SIGKILL); the next worker to take the device
  lock re-queues it once and fails it the second time, saying it stopped twice;
- the dead worker's scratch folder ``media/.tmp/render-cpu-*`` stays until the next worker for the device starts;
- a kill while a file is copied into the store leaves a ``media/.tmp/*.part`` file, never a content path; it is
  swept once it is an hour old (younger ones may belong to a live writer);
- a kill between a file's rename into the store and the commit of its row leaves a complete content file that no
  row names. The re-render of the same job makes the same bytes (same seed, reproducible encode) and adopts it;
  if the job is not rendered again, the next worker to start removes it once it is an hour old;
- a killed worker's ffmpeg child outlives it and finishes into the dead scratch folder; harmless.

A worker process holds its device lock about 0.85 s after it is launched on the 2-core test machine, and
``worker --once`` on an empty queue takes 1.1 s in all: ``app.cli`` imports SQLAlchemy, Alembic and Pillow, and
rendering and scoring an animatic take imports
neither torch nor diffusers (scoring brings in OpenCV). Set ``CRASH_SEED`` to replay the random kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

import projects.worker as worker_module
from pipelines.probe import probe
from projects import project, render_queue, storyboard, takes
from projects.errors import Conflict, InvalidInput
from projects.lifecycle import MAX_ATTEMPTS
from projects.maintenance import verify_media
from projects.records import TakeInfo
from projects.render_queue import JobInfo
from projects.studio import Studio, open_studio
from projects.worker import RenderWorker, WorkerBusy
from storage.media import file_sha256
from storage.models import MediaObject

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS = 640, 384, 16
DEADLINE = 60.0  # seconds: any single wait longer than this is a hang, and fails the test
POLL = 0.02

# Runs the worker command with a fault injected into the media store: the process kills itself with SIGKILL at
# one exact point of storing the take's video, which random timing would hit only now and then.
INJECT = """
import os, signal, sys
from storage.media import MediaStore

where = sys.argv[1]
original = MediaStore.put_stream


def put_stream(self, stream, extension):
    if extension != "mp4":
        return original(self, stream, extension)
    if where == "after-rename":  # the file is in place under its content name; its row is not committed
        original(self, stream, extension)
        os.kill(os.getpid(), signal.SIGKILL)

    class Dying:  # mid-copy: the first chunk reaches the temporary file, then the process dies
        calls = 0

        def read(self, size=-1):
            Dying.calls += 1
            if Dying.calls > 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return stream.read(size)

    return original(self, Dying(), extension)


MediaStore.put_stream = put_stream
from app.cli import main

raise SystemExit(main(sys.argv[2:]))
"""


# Worker processes.


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return f"stdout: {self.stdout.read_text()!r}\nstderr: {self.stderr.read_text()[-3000:]!r}"


class Workers:
    """Starts ``app.py`` processes on one data directory and makes sure none outlives the test."""

    def __init__(self, data_dir: Path, logs: Path) -> None:
        self.data_dir = data_dir
        self.logs = logs
        self.all: list[Worker] = []

    def start(self, *args: str, inject: str | None = None) -> Worker:
        index = len(self.all)
        stdout, stderr = self.logs / f"worker{index}.out", self.logs / f"worker{index}.err"
        head = [sys.executable, "-c", INJECT, inject] if inject else [sys.executable, "app.py"]
        command = [*head, *args, "--data-dir", str(self.data_dir)]
        with stdout.open("wb") as out, stderr.open("wb") as err:
            # Its own process group, so that cleanup also reaches the ffmpeg children a killed worker leaves.
            process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, start_new_session=True)
        worker = Worker(process, stdout, stderr)
        self.all.append(worker)
        return worker

    def run(self, *args: str, inject: str | None = None, timeout: float = DEADLINE) -> tuple[int, str, str]:
        """Run a command to its end; returns (exit status, stdout, stderr)."""
        worker = self.start(*args, inject=inject)
        try:
            code = worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9(worker)
            pytest.fail(f"{' '.join(args)} did not finish in {timeout:.0f} s\n{worker.output()}")
        return code, worker.stdout.read_text(), worker.stderr.read_text()

    def kill9(self, worker: Worker) -> None:
        """SIGKILL the worker process itself (not its children) and reap it."""
        with suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait(timeout=DEADLINE)

    def close(self) -> None:
        for worker in self.all:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=10)


@pytest.fixture
def workers(studio: Studio, tmp_path: Path) -> Iterator[Workers]:
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Workers(studio.data_dir, logs)
    try:
        yield started
    finally:
        started.close()


def wait_until(condition: Callable[[], object], what: str, worker: Worker | None = None) -> object:
    """Poll ``condition`` until it is truthy; fail after DEADLINE, or as soon as ``worker`` exits."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = condition()
        if value:
            return value
        if worker is not None and not worker.alive():
            pytest.fail(f"the worker exited ({worker.process.returncode}) before {what}\n{worker.output()}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {DEADLINE:.0f} s waiting for {what}" + (f"\n{worker.output()}" if worker else "")
            )
        time.sleep(POLL)


# The project and what is on disk.


def make_film(
    studio: Studio, keyframe: Path, *, slow_seconds: float, short_shots: int = 2
) -> tuple[int, list[JobInfo]]:
    """A first shot long enough to be caught mid-render, then short ones; one queued take per shot."""
    film = project.create_project(studio, "The Lighthouse", width=WIDTH, height=HEIGHT, fps=FPS)
    storyboard.add_shot(
        studio,
        film.id,
        title="Stairs",
        prompt="Mara climbs the lighthouse stairs",
        duration=slow_seconds,
        camera="dolly-in",
        keyframe=keyframe,
    )
    for number in range(short_shots):
        storyboard.add_shot(
            studio, film.id, title=f"Short {number}", prompt="the lamp turns", duration=1, camera="pan-left"
        )
    return film.id, render_queue.queue_renders(studio, film.id, seed=7)


def jobs_by_id(studio: Studio, film_id: int) -> dict[int, JobInfo]:
    return {job.id: job for job in render_queue.list_jobs(studio, film_id)}


def all_takes(studio: Studio, film_id: int) -> list[TakeInfo]:
    return list(takes.list_takes(studio, film_id, limit=500).items)


def wait_for_job(
    studio: Studio, film_id: int, job_id: int, test: Callable[[JobInfo], bool], worker: Worker
) -> JobInfo:
    def matching() -> JobInfo | None:
        job = jobs_by_id(studio, film_id)[job_id]
        return job if test(job) else None

    found = wait_until(matching, f"job {job_id}", worker)
    assert isinstance(found, JobInfo)
    return found


def recorded(studio: Studio) -> set[str]:
    with studio.read() as session:
        return set(session.scalars(select(MediaObject.sha256)))


def unrecorded_files(studio: Studio) -> list[Path]:
    """Content files under media/??/??/ that no media row names."""
    known = recorded(studio)
    return sorted(path for path in studio.media.stored_paths() if path.stem not in known)


def scratch_folders(studio: Studio) -> list[Path]:
    return sorted(studio.media.temp_dir.glob("render-cpu-*"))


def part_files(studio: Studio) -> list[Path]:
    return sorted(studio.media.temp_dir.glob("*.part"))


def assert_consistent(studio: Studio, film_id: int) -> None:
    """What holds at every moment, right after a kill included."""
    report = verify_media(studio)
    assert report.ok, f"rows whose file is missing or damaged: {report.problems}"
    for path in studio.media.stored_paths():  # nothing half-written under a content name
        assert file_sha256(path) == path.stem, f"{path} does not hold the bytes it is named by"
    by_take = {take.id: take for take in all_takes(studio, film_id)}
    jobs = render_queue.list_jobs(studio, film_id)
    assert sum(job.state == "running" for job in jobs) <= 1
    for job in jobs:
        take = by_take[job.take_id]
        assert take.status == job.state, (job, take.status)
        if take.status == "done":
            assert take.video_path is not None and take.video_path.is_file(), take
            assert take.thumbnail_path is not None and take.thumbnail_path.is_file(), take
            assert studio.media.check(take.video_sha256, "mp4") is None
        else:
            assert take.video_sha256 is None and take.video_path is None, take


def assert_all_rendered_once(studio: Studio, film_id: int, shots: int) -> None:
    """Every shot has exactly one take, done, whose video plays; the store holds nothing else."""
    assert_consistent(studio, film_id)
    jobs = render_queue.list_jobs(studio, film_id)
    assert [job.state for job in jobs] == ["done"] * shots, [(job.id, job.state, job.error) for job in jobs]
    made = all_takes(studio, film_id)
    assert sorted(take.shot_number for take in made) == list(range(1, shots + 1))
    assert {take.take_number for take in made} == {1}
    for take in made:
        assert take.status == "done" and take.error is None
        assert take.provenance["video"]["sha256"] == take.video_sha256
        assert probe(take.video_path).num_frames == take.num_frames
    assert unrecorded_files(studio) == []
    assert scratch_folders(studio) == []


# 1. kill -9 in the middle of a job.


def test_kill_9_mid_job_loses_nothing_and_the_next_worker_renders_each_job_once(
    studio: Studio, photos: dict[str, Path], workers: Workers
) -> None:
    film_id, queued = make_film(studio, photos["astronaut"], slow_seconds=32)  # 512 frames: two windows, ~8 s
    first, rest = queued[0].id, [job.id for job in queued[1:]]
    keyframe_only = recorded(studio)

    worker = workers.start("worker")
    caught = wait_for_job(studio, film_id, first, lambda job: job.state == "running" and job.step > 0, worker)
    workers.kill9(worker)

    after = jobs_by_id(studio, film_id)
    assert after[first].state == "running" and after[first].attempts == 1, after[first]
    assert after[first].stage != "done" and caught.step < caught.total
    assert [(after[i].state, after[i].attempts) for i in rest] == [("queued", 0)] * len(rest)
    assert [take.status for take in all_takes(studio, film_id)] == ["running", "queued", "queued"]
    assert_consistent(studio, film_id)
    assert recorded(studio) == keyframe_only
    assert unrecorded_files(studio) == []
    assert part_files(studio) == []
    # The dead worker's scratch folder is still there: the next worker for the device removes it.
    assert len(scratch_folders(studio)) == 1

    code, out, err = workers.run("worker", "--once", "--json")
    assert code == 0, err
    assert json.loads(out) == {"jobs_run": 3, "recovered": [first]}

    final = jobs_by_id(studio, film_id)
    assert {i: (job.state, job.attempts, job.error) for i, job in final.items()} == {
        first: ("done", 2, None),
        **{i: ("done", 1, None) for i in rest},
    }
    assert_all_rendered_once(studio, film_id, shots=3)
    assert part_files(studio) == []
    assert recorded(studio) - keyframe_only == {
        sha for take in all_takes(studio, film_id) for sha in (take.video_sha256, take.thumbnail_path.stem)
    }
    code, out, err = workers.run("verify", "--json")
    assert code == 0, out + err
    assert json.loads(out) == {"checked": 7, "problems": []}


# 2. Killed twice.


def test_a_job_killed_twice_is_failed_with_the_reason_and_the_queue_goes_on(
    studio: Studio, photos: dict[str, Path], workers: Workers
) -> None:
    film_id, queued = make_film(studio, photos["astronaut"], slow_seconds=40)
    first, rest = queued[0].id, [job.id for job in queued[1:]]

    for attempt in range(1, MAX_ATTEMPTS + 1):
        worker = workers.start("worker")
        wait_for_job(
            studio,
            film_id,
            first,
            lambda job, n=attempt: job.state == "running" and job.attempts == n and job.step > 0,
            worker,
        )
        workers.kill9(worker)
        assert_consistent(studio, film_id)

    code, out, err = workers.run("worker", "--once", "--json")
    assert code == 0, err
    assert json.loads(out) == {"jobs_run": 2, "recovered": [first]}

    final = jobs_by_id(studio, film_id)
    assert final[first].state == "failed" and final[first].attempts == MAX_ATTEMPTS
    assert "stopped 2 times" in final[first].error and "retry" in final[first].error
    failed_take = next(take for take in all_takes(studio, film_id) if take.id == final[first].take_id)
    assert failed_take.status == "failed" and failed_take.error == final[first].error
    assert failed_take.video_path is None
    assert [(final[i].state, final[i].attempts) for i in rest] == [("done", 1)] * len(rest)
    assert_consistent(studio, film_id)
    assert unrecorded_files(studio) == []
    assert scratch_folders(studio) == [] and part_files(studio) == []
    code, out, err = workers.run("queue", "The Lighthouse", "--json")  # what the user sees
    assert code == 0, err
    shown = {job["id"]: job for job in json.loads(out)["jobs"]}
    assert shown[first]["state"] == "failed" and shown[first]["error"] == final[first].error
    # The user can still have it: a retry queues it afresh.
    again = render_queue.retry_job(studio, first)
    assert (again.state, again.attempts, again.error) == ("queued", 0, None)


# 3. One worker per device, and no stale lock after a kill.


def test_one_worker_per_device_and_a_killed_worker_leaves_no_stale_lock(
    studio: Studio, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = studio.data_dir / "workers" / "cpu.lock"
    worker = workers.start("worker")  # the queue is empty: it waits for jobs, holding the lock
    wait_until(lambda: lock.is_file() and f":{worker.pid}:cpu" in lock.read_text(), "the worker's lock", worker)

    with pytest.raises(WorkerBusy, match="another render worker is already running for device cpu"):
        RenderWorker(studio)
    code, _, err = workers.run("worker", "--once")
    assert code == 1 and "another render worker is already running for device cpu" in err, err
    monkeypatch.setattr(worker_module, "cuda_device_count", lambda: 2)  # as on a machine with two GPUs
    with RenderWorker(studio, device="cuda:1") as other:  # another device has its own lock
        assert other.recovered == []
    monkeypatch.undo()

    workers.kill9(worker)
    assert f":{worker.pid}:cpu" in lock.read_text()  # the file still names the dead worker: it does not matter
    with RenderWorker(studio) as taken:
        assert taken.recovered == []
        assert lock.read_text() == taken.name
    with RenderWorker(studio):  # and closing gives it back
        pass


def test_workers_that_would_share_a_gpu_take_one_lock_and_name_their_device(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cuda`` and ``auto`` are the first GPU, so the page's worker (``auto``) and ``worker --device cuda`` beside it
    no longer hold two locks for one card; ``cuda:1`` is the second card; a GPU that is not there is refused."""
    with RenderWorker(studio) as here:  # no GPU on this machine: auto is the CPU
        assert here.device == "cpu"
    with pytest.raises(Conflict, match="no CUDA GPU here for device cuda"):
        RenderWorker(studio, device="cuda")
    with pytest.raises(InvalidInput, match="must be cpu, cuda, cuda:N or auto"):
        RenderWorker(studio, device="gpu0")
    monkeypatch.setattr(worker_module, "cuda_device_count", lambda: 2)
    with RenderWorker(studio, device="cuda") as first:
        assert first.device == "cuda:0" and (studio.data_dir / "workers" / "cuda-0.lock").is_file()
        for same in ("auto", "cuda:0"):
            with pytest.raises(WorkerBusy, match="device cuda:0"):
                RenderWorker(studio, device=same)
        with RenderWorker(studio, device="cuda:1") as second:
            assert second.device == "cuda:1"
    with pytest.raises(Conflict, match=r"2 CUDA GPU\(s\), cuda:0 to cuda:1; there is no cuda:2"):
        RenderWorker(studio, device="cuda:2")


def test_the_workers_device_reaches_the_backends_load_spec(
    studio: Studio, monkeypatch: pytest.MonkeyPatch, sana_wm_folder: Path
) -> None:
    monkeypatch.setenv("CONTINUITY_MODEL_SANA_WM", str(sana_wm_folder))
    with RenderWorker(studio, device="cpu") as worker:
        backend = worker._backend("sana-wm")
        assert backend.spec.device == "cpu" and backend.settle().device == "cpu"


# 4. SIGTERM.


def test_sigterm_finishes_the_current_job_then_exits_cleanly(
    studio: Studio, photos: dict[str, Path], workers: Workers
) -> None:
    film_id, queued = make_film(studio, photos["astronaut"], slow_seconds=12)
    first, rest = queued[0].id, [job.id for job in queued[1:]]

    worker = workers.start("worker")
    wait_for_job(studio, film_id, first, lambda job: job.state == "running" and job.step > 0, worker)
    worker.process.send_signal(signal.SIGTERM)
    code = worker.process.wait(timeout=DEADLINE)
    # The handler only sets the stop event: the job it was on runs to the end, the next one is not started.
    assert code == 0, worker.output()
    assert worker.stdout.read_text().strip() == "rendered 1 job(s)"
    final = jobs_by_id(studio, film_id)
    assert (final[first].state, final[first].attempts) == ("done", 1)
    assert [(final[i].state, final[i].attempts) for i in rest] == [("queued", 0)] * len(rest)
    assert_consistent(studio, film_id)
    assert scratch_folders(studio) == [] and part_files(studio) == [] and unrecorded_files(studio) == []

    # Idle (queue empty, no --once), SIGTERM ends the wait within the poll interval (2 s).
    worker = workers.start("worker")
    wait_until(
        lambda: all(job.state == "done" for job in render_queue.list_jobs(studio, film_id)), "the queue", worker
    )
    asked = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.process.wait(timeout=DEADLINE)
    assert code == 0, worker.output()
    assert time.monotonic() - asked < 5
    assert worker.stdout.read_text().strip() == "rendered 2 job(s)"
    assert_all_rendered_once(studio, film_id, shots=3)


# 5. Random kills.


def test_random_kills_never_leave_a_broken_take_or_a_stray_file(
    studio: Studio, photos: dict[str, Path], workers: Workers
) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    film = project.create_project(studio, "Random", width=WIDTH, height=HEIGHT, fps=FPS)
    # Chained shots store the previous take's last frame when they start: one more write a kill can interrupt.
    storyboard.add_shot(studio, film.id, prompt="the keeper", duration=2, camera="dolly-in", keyframe=photos["coffee"])
    storyboard.add_shot(
        studio, film.id, prompt="she turns", duration=2, camera="pan-left", continue_from_previous=True
    )
    storyboard.add_shot(studio, film.id, title="Night", prompt="the lamp", duration=2, camera="dolly-out")
    storyboard.add_shot(
        studio, film.id, prompt="she leaves", duration=2, camera="pan-right", continue_from_previous=True
    )
    storyboard.add_shot(studio, film.id, title="Dawn", prompt="the sea", duration=2, camera="tilt-up")
    shots = 5
    render_queue.queue_renders(studio, film.id, seed=11)

    kills = []
    for _ in range(7):
        if all(job.state in ("done", "failed") for job in render_queue.list_jobs(studio, film.id)):
            break
        worker = workers.start("worker", "--once")
        if rng.random() < 0.5:  # at a random moment
            delay = rng.uniform(0.5, 2.0)
            end = time.monotonic() + delay
            while worker.alive() and time.monotonic() < end:
                time.sleep(POLL)
            moment = f"{delay:.2f}s"
        else:  # while a take is encoded and stored: its frames are all rendered
            with suppress(pytest.fail.Exception):
                wait_until(
                    lambda: any(
                        j.state == "running" and j.total and j.step == j.total
                        for j in render_queue.list_jobs(studio, film.id)
                    ),
                    "a rendered job",
                    worker,
                )
            pause = rng.uniform(0, 0.3)
            time.sleep(pause)
            moment = f"encode+{pause:.2f}s"
        if worker.alive():
            workers.kill9(worker)
            kills.append(moment)
        context = f"CRASH_SEED={seed}, kills so far: {kills}"
        try:
            assert_consistent(studio, film.id)
        except AssertionError as exc:
            raise AssertionError(f"{context}: {exc}") from exc

    # The last kill may have left a job running: a worker that runs to the end recovers it and renders the rest.
    code, _, err = workers.run("worker", "--once")
    assert code == 0, err
    # A job killed twice is failed; a chained shot whose previous shot failed fails too. The user retries them.
    failed = sorted(render_queue.list_jobs(studio, film.id, states=["failed"]), key=lambda job: job.shot_number)
    for job in failed:
        assert "stopped 2 times" in job.error or "first" in job.error, (seed, job.error)
        render_queue.retry_job(studio, job.id)
    if failed:
        code, _, err = workers.run("worker", "--once")
        assert code == 0, err
    try:
        assert_all_rendered_once(studio, film.id, shots=shots)
    except AssertionError as exc:
        raise AssertionError(f"CRASH_SEED={seed}, kills: {kills}: {exc}") from exc
    # A kill mid-copy leaves a *.part file in media/.tmp (never under a content name); the next open removes it
    # once it is an hour old.
    old = time.time() - 2 * 3600
    for leftover in part_files(studio):
        os.utime(leftover, (old, old))
    open_studio(studio.data_dir).close()
    assert part_files(studio) == []


# The exact windows of storing a take, hit on purpose.


def test_kill_between_rename_and_commit_leaves_a_file_the_rerender_adopts(
    studio: Studio, photos: dict[str, Path], workers: Workers
) -> None:
    film_id, queued = make_film(studio, photos["astronaut"], slow_seconds=1, short_shots=0)
    code, _, _ = workers.run("worker", "--once", inject="after-rename")
    assert code == -signal.SIGKILL
    assert_consistent(studio, film_id)
    (orphan,) = unrecorded_files(studio)  # complete, under its content name, and no row names it
    assert orphan.suffix == ".mp4" and file_sha256(orphan) == orphan.stem
    assert jobs_by_id(studio, film_id)[queued[0].id].state == "running"

    code, out, err = workers.run("worker", "--once", "--json")
    assert code == 0, err
    assert json.loads(out)["recovered"] == [queued[0].id]
    (take,) = all_takes(studio, film_id)
    assert take.video_sha256 == orphan.stem  # the same seed made the same bytes: the file found its row
    assert_all_rendered_once(studio, film_id, shots=1)
    assert part_files(studio) == []


def test_kill_while_copying_into_the_store_leaves_only_a_hidden_part_file(
    studio: Studio, photos: dict[str, Path], workers: Workers
) -> None:
    film_id, _ = make_film(studio, photos["astronaut"], slow_seconds=1, short_shots=0)
    code, _, _ = workers.run("worker", "--once", inject="mid-copy")
    assert code == -signal.SIGKILL
    assert_consistent(studio, film_id)
    (part,) = part_files(studio)
    assert unrecorded_files(studio) == []

    code, _, err = workers.run("worker", "--once")
    assert code == 0, err
    assert_all_rendered_once(studio, film_id, shots=1)
    assert part_files(studio) == [part]  # too young to be told from a live writer's: kept for now
    old = time.time() - 2 * 3600
    os.utime(part, (old, old))
    open_studio(studio.data_dir).close()
    assert part_files(studio) == []


def test_a_video_orphaned_by_a_job_that_then_fails_is_removed_eventually(
    studio: Studio, photos: dict[str, Path], workers: Workers
) -> None:
    film_id, queued = make_film(studio, photos["astronaut"], slow_seconds=1, short_shots=0)
    for _ in range(MAX_ATTEMPTS):
        code, _, _ = workers.run("worker", "--once", inject="after-rename")
        assert code == -signal.SIGKILL
    (orphan,) = unrecorded_files(studio)
    code, _, err = workers.run("worker", "--once")
    assert code == 0, err
    assert jobs_by_id(studio, film_id)[queued[0].id].state == "failed"
    assert_consistent(studio, film_id)
    old = time.time() - 2 * 3600  # older than any age guard
    os.utime(orphan, (old, old))
    code, _, err = workers.run("worker", "--once")
    assert code == 0, err
    assert unrecorded_files(studio) == []
