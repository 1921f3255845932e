"""The render farm's scheduling and transfers: throughput on 1, 2, 4 and 8 actors, the critical path of chained
shots, and the studio's per-take overhead on the farm against a local worker.

A local Ray cluster declares 8 GPUs (none real); each actor takes one and holds every take for a fixed device time
(``--device-seconds``, a sleep with progress and cancel, see ``projects.farm_actor.RenderActor``) on top of a tiny
animatic take, so what is measured is the farm's scheduling, the transfer of requests and frames and the studio's
storing of each take, not this machine's cores.

- independent: keyframe-first shots, one take each, ``--rounds`` takes per actor (N actors get N times the
  takes, so every run lasts about as long and starts and ends the same way); throughput against N times one
  actor's, budget at least 0.9;
- chained: a chain of ``--chain`` shots (each continues from the one before), two takes each, on 4 actors; the
  time against the critical path, budget at least 0.9 of it. The critical path is one device time per shot of the
  chain plus what the studio itself spends on each link (its last frame read, the take stored), measured as the
  same chain (one take a shot, no device time) on the local worker;
- overhead: the same takes with no device time, one actor against the local worker (``RenderWorker``), per take.

The studio stores every take itself (encodes its mp4, hashes it, commits its rows): about 0.25 s a take on the
2-core development machine, so it can take in about 4 takes a second, whatever the number of actors. A device time
of 2 s on 8 actors brings 4 takes a second (the studio, not the farm, is then the limit: 0.80 of 8x measured);
real takes last 30 s to minutes, and the default of 4 s keeps the studio under half busy at 8 actors.

Writes one JSON report to ``bench/results/`` named by date and machine, prints it, exits 1 over budget.

    python bench/farm_throughput.py [--device-seconds 4] [--rounds 12] [--chain 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

BUDGET_SCALING = 0.9
SIZE = 64


def make_project(data: Path, shots: int, *, chained: bool, takes: int = 1) -> object:
    from projects import project, render_queue, storyboard
    from projects.studio import open_studio

    studio = open_studio(data)
    project.create_project(studio, "Bench", width=SIZE, height=SIZE, fps=8)
    for number in range(1, shots + 1):
        storyboard.add_shot(
            studio, "Bench", prompt=f"beat {number}", duration=0.5, continue_from_previous=chained and number > 1
        )
    render_queue.queue_renders(studio, "Bench", takes=takes)
    return studio


def farm_seconds(data: Path, shots: int, workers: int, pace: float, *, chained: bool = False, takes: int = 1) -> float:
    from projects.farm import Farm

    studio = make_project(data, shots, chained=chained, takes=takes)
    try:
        with Farm(studio, workers=workers, pace_seconds=pace, score=False) as farm:
            start = time.perf_counter()
            ended = farm.run(once=True)
            seconds = time.perf_counter() - start
        assert ended == shots * takes, (ended, shots * takes)
        return seconds
    finally:
        studio.close()


def local_seconds(data: Path, shots: int, *, chained: bool = False) -> float:
    from projects.worker import RenderWorker

    studio = make_project(data, shots, chained=chained)
    try:
        with RenderWorker(studio, device="cpu", score=False) as worker:
            start = time.perf_counter()
            ran = worker.run(once=True)
            seconds = time.perf_counter() - start
        assert ran == shots
        return seconds
    finally:
        studio.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=12, help="takes per actor in the independent runs")
    parser.add_argument("--chain", type=int, default=6)
    parser.add_argument("--overhead-takes", type=int, default=20)
    args = parser.parse_args()

    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=os.cpu_count(),
        num_gpus=8,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"),
    )
    report: dict = {
        "bench": "farm-throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, no GPU (8 declared to Ray)",
        "ray": ray.__version__,
        "device_seconds": args.device_seconds,
    }
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            pace = args.device_seconds
            scaling = {}
            one = None
            for workers in (1, 2, 4, 8):
                count = args.rounds * workers
                seconds = farm_seconds(root / f"independent-{workers}", count, workers, pace)
                throughput = count / seconds
                one = one or throughput
                scaling[workers] = {
                    "takes": count,
                    "seconds": round(seconds, 3),
                    "takes_per_second": round(throughput, 4),
                    "of_n_times_one_actor": round(throughput / (workers * one), 3),
                }
            report["independent"] = {"takes_per_actor": args.rounds, "by_actors": scaling}

            chained = farm_seconds(root / "chained", args.chain, 4, pace, chained=True, takes=2)
            links = local_seconds(root / "chain-local", args.chain, chained=True)
            critical = args.chain * pace + links
            report["chained"] = {
                "shots": args.chain,
                "takes_per_shot": 2,
                "actors": 4,
                "seconds": round(chained, 3),
                "studio_seconds_for_the_links": round(links, 3),
                "critical_path_seconds": round(critical, 3),
                "critical_path_over_measured": round(critical / chained, 3),
            }

            n = args.overhead_takes
            farm_one = farm_seconds(root / "overhead-farm", n, 1, 0.0)
            local = local_seconds(root / "overhead-local", n)
            report["overhead"] = {
                "takes": n,
                "farm_seconds_per_take": round(farm_one / n, 4),
                "local_seconds_per_take": round(local / n, 4),
                "farm_extra_seconds_per_take": round((farm_one - local) / n, 4),
                "farm_over_local": round(farm_one / local, 3),
            }
    finally:
        ray.shutdown()

    worst = min(v["of_n_times_one_actor"] for v in report["independent"]["by_actors"].values())
    report["budgets"] = {
        "independent_scaling_at_least": BUDGET_SCALING,
        "independent_scaling_worst": worst,
        "chained_critical_path_over_measured_at_least": BUDGET_SCALING,
        "passed": worst >= BUDGET_SCALING and report["chained"]["critical_path_over_measured"] >= BUDGET_SCALING,
    }
    text = json.dumps(report, indent=2)
    print(text)
    out = ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y-%m-%d}-farm-throughput-{platform.machine()}.json"
    out.write_text(text + "\n", encoding="utf-8")
    return 0 if report["budgets"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
