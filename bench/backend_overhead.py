"""Studio overhead on a take: a backend call against calling the same diffusers pipeline directly.

Both run the tiny SANA-WM model (random weights, CPU) with the same inputs, interleaved, after a warm-up, so
only the studio's own work differs: request checks, the camera path, progress callbacks, uint8 frames, timings
and provenance. Budget (docs/ARCHITECTURE.md): a ratio of at most 1.05. Prints one JSON object; exits 1 over budget.

    python bench/backend_overhead.py [--repeat 9] [--steps 8] [--frames 17] [--size 128]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

BUDGET = 1.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image
    from tiny_sana_wm import build_sana_wm_folder

    from pipelines.backend import GenerationRequest
    from pipelines.loading import LoadSpec, PipelineCache
    from pipelines.sana_wm import SanaWMBackend, intrinsics_for

    torch.set_num_threads(1)  # the two paths compete for nothing but the clock
    with tempfile.TemporaryDirectory() as folder:
        model = build_sana_wm_folder(Path(folder), with_refiner=False)
        backend = SanaWMBackend(LoadSpec(source=str(model)), cache=PipelineCache())
        keyframe = Image.fromarray((np.random.default_rng(0).random((96, 160, 3)) * 255).astype(np.uint8))
        request = GenerationRequest(
            prompt="a lighthouse keeper climbs the stairs",
            width=args.size,
            height=args.size,
            fps=16,
            num_frames=args.frames,
            seed=3,
            keyframe=keyframe,
            camera="dolly-in",
            steps=args.steps,
        )
        backend.generate(request)  # loads the pipeline and warms both paths' caches
        pipe = backend.cache.get(backend.name, backend.settled, lambda: None).pipe
        action = f"w-{args.frames - 1}"

        def direct() -> None:
            pipe(
                image=keyframe,
                prompt=request.prompt,
                action=action,
                intrinsics=intrinsics_for(keyframe.width, keyframe.height),
                height=args.size,
                width=args.size,
                num_frames=args.frames,
                fps=16,
                num_inference_steps=args.steps,
                guidance_scale=5.0,
                generator=torch.Generator("cpu").manual_seed(3),
                output_type="np",
            )

        def studio() -> None:
            backend.generate(request)

        direct()
        times: dict[str, list[float]] = {"direct": [], "studio": []}
        for _ in range(args.repeat):
            for name, run in (("direct", direct), ("studio", studio)):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    direct_s, studio_s = statistics.median(times["direct"]), statistics.median(times["studio"])
    ratio = studio_s / direct_s
    report = {
        "benchmark": "backend_overhead",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "model": "tiny random SANA-WM (2-layer DiT), float32, CPU, 1 thread",
        "size": args.size,
        "frames": args.frames,
        "steps": args.steps,
        "direct_median_s": round(direct_s, 4),
        "studio_median_s": round(studio_s, 4),
        "ratio": round(ratio, 4),
        "budget_ratio": BUDGET,
        "within_budget": ratio <= BUDGET,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
