"""Scoring time per take, as a fraction of the take's render time with the animatic, and per sampled frame.

A 4-second 640x384 animatic take of a character's photo is rendered and then scored (identity, continuity and
stability) with the offline embedder, as the worker does when a take finishes. Budget (issue: consistency
scores): scoring under 0.5x the render. Prints one JSON object; exits 1 over budget.

    python bench/scoring.py [--seconds 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
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

    import numpy as np
    from PIL import Image
    from skimage import data

    from pipelines.animatic import AnimaticBackend
    from pipelines.backend import GenerationRequest
    from pipelines.consistency import continuity, identity, sample_frames, stability
    from pipelines.embedders import OfflineEmbedder

    astronaut = Image.fromarray(data.astronaut())
    embedder = OfflineEmbedder()
    backend = AnimaticBackend()
    fps = 16
    request = GenerationRequest(
        prompt="Mara looks up",
        width=640,
        height=384,
        fps=fps,
        num_frames=round(args.seconds * fps),
        seed=1,
        keyframe=astronaut,
        camera="dolly-in",
        caption="Arrival",
    )
    render_times, score_times = [], []
    sampled = 0
    for _ in range(args.repeat):
        start = time.perf_counter()
        frames = backend.generate(request).frames
        render_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        who = identity(frames, {"Mara": [astronaut]}, embedder)
        continuity(frames, np.asarray(astronaut), embedder)
        steady = stability(frames, embedder)
        score_times.append(time.perf_counter() - start)
        sampled = who.frames_scored + steady.frames_scored + 3
    render_s, score_s = statistics.median(render_times), statistics.median(score_times)
    report = {
        "benchmark": "scoring",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "embedder": embedder.id,
        "take": f"{request.num_frames} frames at 640x384 (animatic, dolly-in)",
        "render_median_s": round(render_s, 4),
        "score_median_s": round(score_s, 4),
        "frames_sampled": sampled,
        "seconds_per_sampled_frame": round(score_s / sampled, 5),
        "sample_indices_identity": sample_frames(request.num_frames),
        "ratio": round(score_s / render_s, 3),
        "budget_ratio": BUDGET,
        "within_budget": score_s / render_s <= BUDGET,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
