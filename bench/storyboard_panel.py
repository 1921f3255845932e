"""Time for the storyboard panel to render a project with 200 shots, server side, through the app's API.

A project with 200 shots (every one with a keyframe picture, half with a rendered take) is served by the real
app in a subprocess; the storyboard endpoint (the grid of pictures and the shot list) is called through
gradio_client and timed. Reported as JSON: median and worst seconds per refresh.

    python bench/storyboard_panel.py [--shots 200] [--repeat 10]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    from gradio_client import Client
    from PIL import Image
    from skimage import data
    from test_ui_client import start_app

    from projects import project, storyboard
    from projects.render_queue import RenderSettings, queue_renders
    from projects.studio import open_studio
    from projects.worker import RenderWorker

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        keyframe = root / "keyframe.png"
        Image.fromarray(data.astronaut()).resize((160, 160)).save(keyframe)
        studio = open_studio(root / "data")
        film = project.create_project(studio, "Two hundred", width=64, height=64, fps=8)
        for index in range(args.shots):
            storyboard.add_shot(studio, film.id, prompt=f"shot {index + 1}", duration=0.5, keyframe=keyframe)
        queue_renders(studio, film.id, shots=list(range(1, args.shots // 2 + 1)), settings=RenderSettings())
        with RenderWorker(studio, score=False) as worker:
            worker.run(once=True)
        studio.close()
        process, url = start_app(root / "data")
        try:
            client = Client(url, verbose=False, download_files=False)  # the server's time, not downloads
            client.predict(film.id, api_name="/open_project")
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                grid, listed, *_ = client.predict(api_name="/storyboard")
                times.append(time.perf_counter() - start)
            shown = len(listed["data"])
        finally:
            process.terminate()
            process.wait(timeout=20)
    report = {
        "benchmark": "storyboard_panel",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "shots": args.shots,
        "shots_shown": shown,
        "pictures": len(grid),
        "median_s": round(statistics.median(times), 4),
        "max_s": round(max(times), 4),
    }
    print(json.dumps(report, indent=2))
    return 0 if shown == args.shots else 1


if __name__ == "__main__":
    raise SystemExit(main())
