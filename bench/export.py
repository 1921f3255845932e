"""Exporting a film against ffmpeg doing the same job by itself, on the same rendered clips.

Budgets (docs/ARCHITECTURE.md), as ratios measured in one run, the two sides interleaved so that the machine's
noise falls on both:

- an edit with no transitions (the stream-copy path) at most 1.3x ffmpeg's concat demuxer with ``-c copy``;
- an edit with crossfades at most 1.5x the equivalent ffmpeg filter graph (a chain of ``xfade`` filters) with the
  same encoder settings.

The studio's side is the whole ``export_project`` call a user makes: reading the project, re-hashing every take,
deciding on the path, writing beside the target and renaming. Prints one JSON object; exits 1 over budget.

    python bench/export.py [--clips 20] [--seconds 2] [--size 640x384] [--fps 16] [--crossfade 0.5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.edit import concat_list
from pipelines.ffmpeg import find_tools
from pipelines.video import PRESET, THREADS
from projects import export, project, render_queue, storyboard, takes
from projects.edit_plan import ExportOptions
from projects.studio import Studio, open_studio
from projects.worker import RenderWorker

BUDGET_STREAM_COPY = 1.3
BUDGET_CROSSFADE = 1.5
CRF = 18


def rendered_project(studio: Studio, clips: int, seconds: float, width: int, height: int, fps: int) -> list[Path]:
    """A project of ``clips`` shots with one approved animatic take each; the take files in shot order."""
    project.create_project(studio, "Bench", width=width, height=height, fps=fps)
    cameras = ("dolly-in", "pan-left", "orbit-right", "tilt-up", "static")
    for index in range(clips):
        storyboard.add_shot(
            studio, "Bench", prompt=f"shot {index + 1}", duration=seconds, camera=cameras[index % len(cameras)]
        )
    render_queue.queue_renders(studio, "Bench")
    RenderWorker(studio, score=False).run(once=True)
    made = sorted(takes.list_takes(studio, "Bench", limit=500).items, key=lambda take: take.shot_number)
    for take in made:
        takes.approve_take(studio, take.id)
    return [take.video_path for take in made]


def ffmpeg_concat_copy(ffmpeg: str, clips: list[Path], out: Path) -> None:
    """What a user would type: a concat list, then ``ffmpeg -f concat -safe 0 -i list -c copy out.mp4``."""
    listing = out.with_suffix(".txt")
    listing.write_text(concat_list(clips), encoding="utf-8")
    command = [ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)]
    subprocess.run(command, check=True)


def ffmpeg_xfade(ffmpeg: str, clips: list[Path], seconds: float, crossfade: float, out: Path) -> None:
    """The same film as one ffmpeg filter graph: a chain of ``xfade`` filters, encoded as the studio encodes."""
    arguments = [ffmpeg, "-v", "error", "-y"]
    for clip in clips:
        arguments += ["-i", str(clip)]
    chain, previous, offset = [], "[0:v]", 0.0
    for index in range(1, len(clips)):
        offset += seconds - crossfade
        chain.append(f"{previous}[{index}:v]xfade=transition=fade:duration={crossfade}:offset={offset:.6f}[x{index}]")
        previous = f"[x{index}]"
    graph = ";".join(chain) if chain else "[0:v]null[x0]"
    mapped = previous if chain else "[x0]"
    arguments += ["-filter_complex", graph, "-map", mapped, "-an"]
    arguments += ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-threads", str(THREADS)]
    arguments += ["-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    arguments += ["-movflags", "+faststart", str(out)]
    subprocess.run(arguments, check=True)


def interleaved(studio_side: Callable[[], None], ffmpeg_side: Callable[[], None], repeat: int) -> dict[str, float]:
    """Median seconds of each side, run alternately (one warm-up of each first, not counted)."""
    ffmpeg_side()
    studio_side()
    ours, theirs = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        ffmpeg_side()
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        studio_side()
        ours.append(time.perf_counter() - start)
    studio_median, ffmpeg_median = statistics.median(ours), statistics.median(theirs)
    return {
        "studio_median_s": round(studio_median, 4),
        "ffmpeg_median_s": round(ffmpeg_median, 4),
        "ratio": round(studio_median / ffmpeg_median, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of every shot")
    parser.add_argument("--size", default="640x384", help="WIDTHxHEIGHT (multiples of 8)")
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--crossfade", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))
    ffmpeg = find_tools().ffmpeg
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        studio = open_studio(root / "data")
        render_start = time.perf_counter()
        clips = rendered_project(studio, args.clips, args.seconds, width, height, args.fps)
        render_seconds = time.perf_counter() - render_start
        out = root / "out"
        out.mkdir()
        copied = export.export_project(studio, "Bench", out / "studio-copy.mp4").film
        crossfaded = export.export_project(
            studio, "Bench", out / "studio-xfade.mp4", options=ExportOptions(crossfade=args.crossfade)
        ).film
        assert copied.method == "stream copy" and crossfaded.method == "encode"
        results = {
            "stream_copy": interleaved(
                lambda: export.export_project(studio, "Bench", out / "studio-copy.mp4"),
                lambda: ffmpeg_concat_copy(ffmpeg, clips, out / "ffmpeg-copy.mp4"),
                args.repeat,
            ),
            "crossfade": interleaved(
                lambda: export.export_project(
                    studio, "Bench", out / "studio-xfade.mp4", options=ExportOptions(crossfade=args.crossfade)
                ),
                lambda: ffmpeg_xfade(ffmpeg, clips, args.seconds, args.crossfade, out / "ffmpeg-xfade.mp4"),
                args.repeat,
            ),
        }
        studio.close()
    results["stream_copy"]["budget_ratio"] = BUDGET_STREAM_COPY
    results["crossfade"]["budget_ratio"] = BUDGET_CROSSFADE
    report = {
        "benchmark": "export",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "clips": args.clips,
        "seconds_per_clip": args.seconds,
        "size": f"{width}x{height}",
        "fps": args.fps,
        "crossfade_s": args.crossfade,
        "film_frames": {"stream_copy": copied.frames, "crossfade": crossfaded.frames},
        "render_seconds": round(render_seconds, 2),
        "repeat": args.repeat,
        "results": results,
        "within_budget": all(r["ratio"] <= r["budget_ratio"] for r in results.values()),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
