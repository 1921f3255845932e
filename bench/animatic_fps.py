"""Animatic throughput at 640x384: frames per second on one core, for every camera preset.

Budget (docs/ARCHITECTURE.md): real time or better, i.e. at least the shot's own fps (16) on one core. The
ratio reported is rendered fps over 16. Prints one JSON object; exits 1 when any preset is below real time.

    python bench/animatic_fps.py [--frames 161] [--width 640] [--height 384]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FPS = 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=161)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=384)
    args = parser.parse_args()

    from PIL import Image
    from skimage import data

    from pipelines.animatic import AnimaticBackend
    from pipelines.backend import GenerationRequest
    from pipelines.camera import PRESETS

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the budget says
    keyframe = Image.fromarray(data.astronaut())
    backend = AnimaticBackend()
    results = {}
    for camera in sorted(PRESETS):
        request = GenerationRequest(
            prompt="Mara climbs the stairs",
            width=args.width,
            height=args.height,
            fps=FPS,
            num_frames=args.frames,
            seed=1,
            keyframe=keyframe,
            camera=camera,
            caption="Arrival",
        )
        start = time.perf_counter()
        backend.generate(request)
        seconds = time.perf_counter() - start
        results[camera] = {
            "fps": round(args.frames / seconds, 1),
            "realtime_ratio": round(args.frames / seconds / FPS, 2),
        }
    worst = min(r["realtime_ratio"] for r in results.values())
    report = {
        "benchmark": "animatic_fps",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cores": 1,
        "size": f"{args.width}x{args.height}",
        "frames": args.frames,
        "results": results,
        "worst_realtime_ratio": worst,
        "budget_realtime_ratio": 1.0,
        "within_budget": worst >= 1.0,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
