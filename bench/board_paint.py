"""The board of a 1,000-shot project in a real browser: how long until its cards are painted, and a scroll to the
last shot.

A studio is made with two projects: "Epic" (1,000 shots imported from one storyboard file) and "One" (a single
shot, the baseline measured in the same run). For each, Debian's Chromium (headless, through Playwright) opens the
studio page, opens the project and the Board tab, and times:

- ``open_seconds``: from choosing the project to its first card painted on the board;
- ``scroll_seconds``: scrolling the last card into view until it is painted (its title laid out);
- ``server_seconds``: :func:`projects.board.board` alone, in this process, for the same project.

Budget: the 1,000-shot board's first paint in under 2 s, and at most 4x the one-shot board's. Writes one JSON
report to ``bench/results/`` named by date and machine, and prints it.

    python bench/board_paint.py [--shots 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

BUDGET_SECONDS = 2.0
BUDGET_RATIO = 4.0


def make_studio(data: Path, shots: int) -> None:
    from projects.project import create_project
    from projects.storyboard import add_shot
    from projects.storyboard_file import import_storyboard
    from projects.studio import open_studio

    studio = open_studio(data)
    try:
        board = [{"title": f"Beat {n}", "prompt": f"the keeper, beat {n}", "duration": 2} for n in range(1, shots + 1)]
        path = data.parent / "epic.json"
        path.write_text(json.dumps({"project": "Epic", "shots": board}))
        import_storyboard(studio, path)
        create_project(studio, "One")
        add_shot(studio, "One", title="Beat 1", prompt="the keeper", duration=2)
    finally:
        studio.close()


def server_seconds(data: Path, name: str) -> float:
    from projects.board import board
    from projects.studio import open_studio

    studio = open_studio(data)
    try:
        board(studio, name)  # the first read warms SQLite's cache, as a page that is open would have
        start = time.perf_counter()
        board(studio, name)
        return time.perf_counter() - start
    finally:
        studio.close()


def measure(tab: object, name: str, last: int) -> dict[str, float]:
    field = tab.locator("#open-project input").first
    field.click()
    field.fill(name)
    tab.wait_for_timeout(300)
    tab.get_by_role("tab", name="Board", exact=True).click()
    start = time.perf_counter()
    field.press("ArrowDown")
    field.press("Enter")
    tab.locator("#board #shot-card-1").wait_for(state="visible", timeout=60_000)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    tab.locator(f"#board #shot-card-{last}").scroll_into_view_if_needed(timeout=60_000)
    tab.wait_for_function(
        f"() => (document.querySelector('#shot-card-{last} .title')?.getBoundingClientRect().height || 0) > 0",
        timeout=60_000,
    )
    scrolled = time.perf_counter() - start
    return {"open_seconds": round(opened, 3), "scroll_seconds": round(scrolled, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS
    from test_ui_client import start_app

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        make_studio(data, args.shots)
        runs = {
            "one": {"shots": 1, "server_seconds": round(server_seconds(data, "One"), 4)},
            "epic": {"shots": args.shots, "server_seconds": round(server_seconds(data, "Epic"), 4)},
        }
        process, url = start_app(data)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for key, name, last in (("one", "One", 1), ("epic", "Epic", args.shots)):
                    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                    tab.goto(url)
                    tab.wait_for_selector("#create-project", timeout=60_000)
                    runs[key] |= measure(tab, name, last)
                    tab.close()
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=20)
    ratio = runs["epic"]["open_seconds"] / max(runs["one"]["open_seconds"], 1e-3)
    report = {
        "benchmark": "board_paint",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.system()}",
        "runs": runs,
        "open_ratio": round(ratio, 2),
        "budget_seconds": BUDGET_SECONDS,
        "budget_ratio": BUDGET_RATIO,
        "within_budget": runs["epic"]["open_seconds"] <= BUDGET_SECONDS and ratio <= BUDGET_RATIO,
    }
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y-%m-%d}-board-paint-{platform.machine()}.json"
    (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
