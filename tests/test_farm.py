"""The render farm on a local Ray cluster: CPU actors, with Ray's own resource accounting standing in for GPUs
(the cluster declares four GPUs; each actor takes one, and renders on the CPU since none is there).

A storyboard with chained and independent shots renders every take once in an order that respects every chain;
an actor killed mid-take loses nothing and duplicates nothing; a coordinator killed mid-night and started again
finishes the rest."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from projects import project as projects
from projects import render_queue, storyboard, takes
from projects.errors import InvalidInput
from projects.farm import DEVICE_PREFIX, Farm
from projects.farm_schedule import ready_jobs
from projects.studio import Studio, open_studio
from projects.worker import RenderWorker
from storage.models import Job

ROOT = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One local Ray cluster for the module: 2 CPUs and 4 GPUs in Ray's accounting (none real)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield
    ray.shutdown()


def make_story(studio: Studio, takes_each: int = 2) -> None:
    """Six shots: 1 <- 2 <- 3 a chain, 4 on its own, 5 <- 6 a chain."""
    projects.create_project(studio, "Harbour", width=64, height=64, fps=8)
    for number in range(1, 7):
        storyboard.add_shot(
            studio,
            "Harbour",
            title=f"Beat {number}",
            prompt=f"the harbour, beat {number}",
            duration=0.5,
            continue_from_previous=number in (2, 3, 6),
        )
    render_queue.queue_renders(studio, "Harbour", takes=takes_each, seed=7)


def jobs(studio: Studio) -> list[Job]:
    with studio.read() as session:
        rows = session.query(Job).all()
        for job in rows:
            session.expunge(job)
        return rows


def shot_of(studio: Studio) -> dict[int, int]:
    return {t.id: t.shot_number for t in takes.list_takes(studio, "Harbour").items}


def assert_chains_kept(studio: Studio) -> None:
    """Every take of a continued shot started from a take of the shot before it, which had finished by then."""
    made = {take.id: take for take in takes.list_takes(studio, "Harbour").items}
    job_of = {job.take_id: job for job in jobs(studio) if job.state == "done"}
    for take in made.values():
        if take.shot_number in (2, 3, 6):
            assert take.source_take_id is not None, take
            source = made[take.source_take_id]
            assert source.shot_number == take.shot_number - 1
            assert job_of[source.id].finished_at <= job_of[take.id].started_at


def test_a_storyboard_renders_every_take_once_keeping_every_chain(
    cluster: None, studio: Studio, tmp_path: Path
) -> None:
    make_story(studio)
    # As from the machines of a cluster: each take encoded where it was rendered.
    with Farm(studio, workers=3, pace_seconds=0.3, score=False, encode_on_workers=True) as farm:
        assert len(farm.workers) == 3 and all(w.device.startswith(DEVICE_PREFIX) for w in farm.workers)
        ended = farm.run(once=True)

    assert ended == 12
    rows = jobs(studio)
    assert sorted(job.state for job in rows) == ["done"] * 12 and all(job.attempts == 1 for job in rows)
    made = takes.list_takes(studio, "Harbour").items
    assert len(made) == 12 and all(take.status == "done" for take in made)
    assert_chains_kept(studio)
    # Independent shots ran side by side: some two jobs overlapped in time on different workers.
    spans = sorted((job.started_at, job.finished_at, job.device) for job in rows)
    assert any(b[0] < a[1] and a[2] != b[2] for a, b in itertools.pairwise(spans))
    # Where a take was rendered is in its provenance, and nothing else about it differs from a local take.
    take = takes.get_take(studio, made[0].id)
    assert take.provenance["device"].startswith(DEVICE_PREFIX) and ":cpu@" in take.provenance["device"]
    assert take.provenance["worker"].endswith("/" + take.provenance["device"])

    # The same storyboard rendered by a local worker gives the same takes, byte for byte (the shots that start
    # from their own picture: a continued shot starts from whichever take of the shot before finished last).
    here = open_studio(tmp_path / "local")
    try:
        make_story(here)
        with RenderWorker(here, device="cpu", score=False) as worker:
            worker.run(once=True)

        def rendered(where: Studio) -> dict:
            found = {}
            for item in takes.list_takes(where, "Harbour").items:
                if item.shot_number not in (1, 4, 5):
                    continue
                full = takes.get_take(where, item.id)
                found[(item.shot_number, item.take_number)] = (
                    full.video_sha256,
                    full.provenance["frames_sha256"],
                    full.num_frames,
                    full.params["generation"],
                )
            return found

        assert rendered(studio) == rendered(here)
    finally:
        here.close()


def test_a_chained_shot_waits_for_the_take_it_starts_from(studio: Studio) -> None:
    make_story(studio, takes_each=1)
    with studio.read() as session:
        ready = [job.take.shot.position for job in ready_jobs(session)]
    assert ready == [1, 4, 5]  # 2, 3 and 6 wait for a take of the shot before them


def test_an_actor_killed_mid_take_loses_nothing_and_duplicates_nothing(cluster: None, studio: Studio) -> None:
    make_story(studio, takes_each=1)
    with Farm(studio, workers=2, pace_seconds=1.5, score=False) as farm:
        killed = []

        def kill_one() -> bool:
            busy = [w for w in farm.workers if w.job is not None]
            if not killed and busy and time.monotonic() - busy[0].polled < 5:
                killed.append(busy[0].job)
                time.sleep(0.3)
                farm.kill_worker(busy[0].index)
            return False

        farm.run(once=True, until=kill_one)
        assert len(farm.workers) == 2  # a new actor took the lost one's place

    rows = jobs(studio)
    assert killed and sorted(job.state for job in rows) == ["done"] * 6
    again = next(job for job in rows if job.id == killed[0])
    assert again.attempts == 2  # queued again once, then rendered
    made = takes.list_takes(studio, "Harbour").items
    assert len(made) == 6 and len({(t.shot_number, t.take_number) for t in made}) == 6
    assert_chains_kept(studio)


def test_a_coordinator_killed_mid_night_finishes_the_rest_when_started_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    studio = open_studio(data)
    try:
        make_story(studio, takes_each=1)
    finally:
        studio.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTINUITY_", "RAY_ADDRESS"))}
    env["CONTINUITY_FARM_PACE"] = "0.8"
    command = [sys.executable, "app.py", "farm", "--once", "--workers", "2", "--data-dir", str(data)]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    studio = open_studio(data)
    try:
        while time.monotonic() < deadline:
            states = [job.state for job in jobs(studio)]
            if states.count("done") >= 1 and "running" in states:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the farm never got going: {first.communicate(timeout=30)[0].decode()[-2000:]}")
        first.kill()
        first.wait(timeout=30)
        left = [job.state for job in jobs(studio)]
        assert "running" in left and left.count("done") < 6

        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        rows = jobs(studio)
        assert sorted(job.state for job in rows) == ["done"] * 6, [(j.id, j.state, j.error) for j in rows]
        assert len(takes.list_takes(studio, "Harbour").items) == 6
        assert_chains_kept(studio)
    finally:
        studio.close()


def test_progress_reaches_the_queue_and_cancel_reaches_the_actor(cluster: None, studio: Studio) -> None:
    make_story(studio, takes_each=1)
    stop = threading.Event()
    with Farm(studio, workers=1, pace_seconds=4.0, score=False) as farm:
        runner = threading.Thread(target=farm.run, kwargs={"stop": stop, "poll_seconds": 0.2})
        runner.start()
        try:
            seen = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and seen is None:
                running = render_queue.list_jobs(studio, "Harbour", states=["running"])
                if running and running[0].stage == "device" and running[0].step >= 2:
                    seen = running[0]
                time.sleep(0.1)
            assert seen is not None, "no progress from the actor reached the queue"
            assert seen.total > seen.step  # the actor is part-way through
            asked = time.monotonic()
            render_queue.cancel_job(studio, seen.id)
            while time.monotonic() - asked < 10 and render_queue.get_job(studio, seen.id).state == "running":
                time.sleep(0.05)
            ended = render_queue.get_job(studio, seen.id)
            assert ended.state == "cancelled" and time.monotonic() - asked < 3, ended
            # The farm goes on with the next job.
            while time.monotonic() - asked < 30 and not render_queue.list_jobs(studio, "Harbour", states=["done"]):
                time.sleep(0.1)
            assert render_queue.list_jobs(studio, "Harbour", states=["done"])
        finally:
            stop.set()
            runner.join(timeout=30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus_per_worker": 0}, "gpus_per_worker: must be a number above 0"),
        ({"workers": 0}, "workers: must be a whole number from 1"),
        ({"workers": True}, "workers: must be a whole number from 1"),
    ],
)
def test_bad_farm_settings_are_refused(studio: Studio, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Farm(studio, **kwargs)


def test_more_workers_than_the_cluster_has_gpus_is_refused(cluster: None, studio: Studio) -> None:
    from projects.farm import FarmError

    with pytest.raises(FarmError, match="room for 2 worker"):
        Farm(studio, workers=3, gpus_per_worker=2)


def test_the_python_api_renders_the_queue_on_the_farm(cluster: None, tmp_path: Path) -> None:
    import continuity

    with continuity.open(tmp_path / "films") as studio:
        film = studio.create_project("Harbour", width=64, height=64, fps=8)
        film.add_shot("the harbour at dawn", 0.5)
        film.add_shot("gulls over the water", 0.5, continue_from_previous=True)
        film.render(takes=1, wait=False)
        said = studio.farm(workers=2)
        assert said["jobs_ended"] == 2 and len(said["workers"]) == 2
        made = film.takes()
        assert [(t.shot_number, t.status) for t in made] == [(1, "done"), (2, "done")]
        assert made[1].source_take_id == made[0].id


def test_the_page_starts_and_stops_the_farm_pausing_its_own_worker(cluster: None, studio: Studio) -> None:
    from projects.farm_runner import FarmRunner
    from projects.worker_thread import WorkerThread

    local = WorkerThread(studio, device="cpu", poll_seconds=0.2)
    local.start()
    runner = FarmRunner(studio, local=local)
    try:
        assert "not running" in runner.status()
        with pytest.raises(InvalidInput, match="is not a Ray address"):
            runner.start("my farm")
        with pytest.raises(InvalidInput, match="gpus_per_worker"):
            runner.start(gpus_per_worker=-1)
        assert local.alive  # a refused start stops nothing

        said = runner.start(workers=2)
        assert said.startswith("The farm renders the queue on 2 worker(s)") and not local.alive
        make_story(studio, takes_each=1)
        runner.wake()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(render_queue.list_jobs(studio, "Harbour", states=["done"])) < 6:
            time.sleep(0.2)
        done = render_queue.list_jobs(studio, "Harbour", states=["done"])
        assert len(done) == 6 and all(job.device.startswith(DEVICE_PREFIX) for job in jobs(studio))

        assert runner.stop().startswith("The farm stopped after ending 6 job(s)")
        assert local.alive and local.rendering  # the studio's own worker renders again
    finally:
        if runner.running:
            runner.stop()
        local.stop()


def test_a_cluster_that_is_not_there_gets_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTINUITY_", "RAY_ADDRESS"))}
    command = [sys.executable, "app.py", "farm", "--once", "--data-dir", str(tmp_path / "data")]
    # Nothing listens there (Ray's client gives up after a second, not its default 30).
    quick = env | {"RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1", "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1"}
    address = ["--address", "ray://127.0.0.1:9"]
    missing = subprocess.run([*command, *address], cwd=ROOT, env=quick, capture_output=True, text=True)
    assert missing.returncode == 1
    assert "error: could not start or reach Ray on ray://127.0.0.1:9: ray client connection timeout" in missing.stderr
    bad = subprocess.run([*command, "--workers", "0"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "workers: must be a whole number from 1, got 0" in bad.stderr
