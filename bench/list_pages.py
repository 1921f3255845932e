"""Listing a page of shots and of takes in a large project: 1,000 shots and 10,000 takes.

Budget (docs/ARCHITECTURE.md): under 50 ms per page, through the same service functions the UI and command line use.
Prints one JSON object; exits 1 when a median is over budget.

    python bench/list_pages.py [--shots 1000] [--takes-per-shot 10] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from projects import project, storyboard, takes
from projects.studio import open_studio
from storage.models import Shot, Take

BUDGET_MS = 50.0


def fill(studio, shots: int, takes_per_shot: int) -> int:
    film = project.create_project(studio, "Bench", fps=16)
    with studio.write() as session:
        session.execute(
            insert(Shot),
            [
                {
                    "project_id": film.id,
                    "position": i,
                    "prompt": f"shot {i} prompt",
                    "duration": 4.0,
                    "camera": "static",
                }
                for i in range(1, shots + 1)
            ],
        )
        shot_ids = [row[0] for row in session.execute(Shot.__table__.select().with_only_columns(Shot.id)).all()]
        rows = [
            {
                "shot_id": shot_id,
                "take_number": n,
                "status": "done" if n > 1 else "failed",
                "backend": "animatic",
                "seed": n,
                "prompt": "p",
                "width": 640,
                "height": 384,
                "fps": 16,
                "num_frames": 65,
                "params": {"steps": 30, "guidance": 5.0},
                "timings": {"total": 12.5},
                "provenance": {"device": "cpu"},
                "approved": n == 2,
            }
            for shot_id in shot_ids
            for n in range(1, takes_per_shot + 1)
        ]
        session.execute(insert(Take), rows)
    return film.id


def timed(fn, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--takes-per-shot", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--page", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        studio = open_studio(Path(folder))
        fill_start = time.perf_counter()
        film = fill(studio, args.shots, args.takes_per_shot)
        fill_seconds = time.perf_counter() - fill_start
        middle = args.shots // 2
        results = {
            "shots_page_first": timed(lambda: storyboard.list_shots(studio, film, limit=args.page), args.repeat),
            "shots_page_middle": timed(
                lambda: storyboard.list_shots(studio, film, offset=middle, limit=args.page), args.repeat
            ),
            "takes_page_middle": timed(
                lambda: takes.list_takes(studio, film, offset=middle * args.takes_per_shot, limit=args.page),
                args.repeat,
            ),
            "takes_page_one_shot": timed(lambda: takes.list_takes(studio, film, shot_number=middle), args.repeat),
        }
        studio.close()
    worst = max(r["median_ms"] for r in results.values())
    report = {
        "benchmark": "list_pages",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "shots": args.shots,
        "takes": args.shots * args.takes_per_shot,
        "page_size": args.page,
        "fill_seconds": round(fill_seconds, 2),
        "results": results,
        "budget_ms": BUDGET_MS,
        "within_budget": worst <= BUDGET_MS,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
