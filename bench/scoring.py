"""Scoring time per take, as a fraction of the take's render time with the animatic, and per sampled frame.

A 4-second 640x384 animatic take of a character's photo (the character in the shot, the next shot continuing
from it) is rendered by the worker, then scored exactly as the worker scores a finished take (identity by
the face model, look, continuity and stability by the offline embedder, frames in memory). The take's render
time is what the worker spends making it: frames plus the encoded video (its recorded timings); the ratio to
frame generation alone is reported too. Budget (docs/ARCHITECTURE.md): scoring under 0.5x the take's render
time. Prints one JSON object; exits 1 over budget.

    python bench/scoring.py [--seconds 4] [--repeat 5]
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

BUDGET = 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from PIL import Image
    from skimage import data

    from pipelines.consistency import sample_frames
    from pipelines.embedders import OfflineEmbedder
    from pipelines.video import read_frames
    from projects import cast, project, storyboard, takes
    from projects.render_queue import RenderSettings, queue_renders
    from projects.scoring import score_take
    from projects.studio import open_studio
    from projects.worker import RenderWorker

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        photo = root / "mara.png"
        Image.fromarray(data.astronaut()).save(photo)
        studio = open_studio(root / "data")
        film = project.create_project(studio, "Bench", width=640, height=384, fps=16)
        cast.add_character(studio, film.id, "Mara", description="an astronaut", references=[photo])
        storyboard.add_shot(
            studio,
            film.id,
            prompt="Mara",
            duration=args.seconds,
            characters=["Mara"],
            keyframe=photo,
            camera="dolly-in",
        )
        storyboard.add_shot(
            studio,
            film.id,
            prompt="Mara turns",
            duration=args.seconds,
            characters=["Mara"],
            continue_from_previous=True,
        )
        queue_renders(studio, film.id, shots=[1], settings=RenderSettings(caption=False), seed=0)
        render_times, generate_times, score_times = [], [], []
        with RenderWorker(studio, score=False) as worker:
            worker.run(once=True)
            for index in range(args.repeat):
                queue_renders(studio, film.id, shots=[2], settings=RenderSettings(caption=False), seed=index)
                worker.run(once=True)
                take = takes.list_takes(studio, film.id, shot_number=2).items[-1]
                generate_times.append(take.timings["render"])
                render_times.append(take.timings["render"] + take.timings["encode"])
                frames = read_frames(take.video_path)
                start = time.perf_counter()
                scored = score_take(studio, take.id, frames=frames)
                score_times.append(time.perf_counter() - start)
        studio.close()
    render_s, generate_s, score_s = (statistics.median(t) for t in (render_times, generate_times, score_times))
    sampled = scored.details["identity"]["frames_scored"] + scored.details["stability"]["frames_scored"] + 3
    report = {
        "benchmark": "scoring",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "embedder": OfflineEmbedder.id,
        "take": f"{round(args.seconds * 16)} frames at 640x384 (animatic; identity, look, continuity, stability)",
        "scores": {metric: round(value, 4) for metric, value in scored.scores.items()},
        "take_render_median_s": round(render_s, 4),
        "frame_generation_median_s": round(generate_s, 4),
        "score_median_s": round(score_s, 4),
        "frames_sampled": sampled,
        "seconds_per_sampled_frame": round(score_s / sampled, 5),
        "identity_sample": sample_frames(round(args.seconds * 16)),
        "ratio_to_take_render": round(score_s / render_s, 3),
        "ratio_to_frame_generation": round(score_s / generate_s, 3),
        "budget_ratio": BUDGET,
        "within_budget": score_s / render_s <= BUDGET,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
