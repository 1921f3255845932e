"""Idle is idle: the CPU an open studio page and its server use while nobody does anything.

A studio with a project of 8 shots (two rendered) is served; Debian's Chromium (headless, through Playwright) opens
the page, opens the project and each tab in turn, then the page sits on the Board for ``--seconds``. The server's
CPU time (user + system, from ``/proc``) and the browser's (every Chromium process) over that stretch are reported
as a share of one core; the baseline is the same stretch measured with no page open, in the same run.

Budget: the server with an idle page open uses at most 1% of a core more than the server alone; the page at most
2% of a core. Writes one JSON report to ``bench/results/`` named by date and machine, and prints it.

    python bench/idle_cpu.py [--seconds 20]
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

BUDGET_SERVER = 0.01
BUDGET_PAGE = 0.02
TABS = ("Projects", "Cast", "Board", "Storyboard", "Takes", "Queue", "Export", "Settings", "Board")


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of these processes so far (those that are gone count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            kids = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return found


def share(pids: list[int], seconds: float) -> float:
    before = cpu_seconds(pids)
    time.sleep(seconds)
    return (cpu_seconds(pids) - before) / seconds


def make_studio(data: Path) -> None:
    from projects import render_queue, storyboard
    from projects.project import create_project
    from projects.studio import open_studio
    from projects.worker import RenderWorker

    studio = open_studio(data)
    try:
        create_project(studio, "Harbour", width=128, height=80, fps=8)
        for number in range(1, 9):
            storyboard.add_shot(studio, "Harbour", title=f"Pier {number}", prompt=f"beat {number}", duration=1.0)
        render_queue.queue_renders(studio, "Harbour", shots=[1, 2], takes=1)
        with RenderWorker(studio) as worker:
            worker.run(once=True)
    finally:
        studio.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS, open_project
    from test_ui_client import start_app

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        make_studio(data)
        process, url = start_app(data)
        try:
            server = children(process.pid)
            alone = share(server, args.seconds)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                tab.goto(url)
                tab.wait_for_selector("#create-project", timeout=60_000)
                open_project(tab, "Harbour")
                for title in TABS:
                    tab.get_by_role("tab", name=title, exact=True).click()
                    tab.wait_for_timeout(700)
                tab.wait_for_timeout(3000)  # the last replies land
                browsers = [p for p in children(os.getpid()) if "chrom" in Path(f"/proc/{p}/comm").read_text()]
                before_server, before_page = cpu_seconds(server), cpu_seconds(browsers)
                time.sleep(args.seconds)
                served = (cpu_seconds(server) - before_server) / args.seconds
                paged = (cpu_seconds(browsers) - before_page) / args.seconds
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=20)
    report = {
        "benchmark": "idle_cpu",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds": args.seconds,
        "server_alone_core_share": round(alone, 4),
        "server_with_idle_page_core_share": round(served, 4),
        "page_core_share": round(paged, 4),
        "budget_server_over_alone": BUDGET_SERVER,
        "budget_page": BUDGET_PAGE,
        "within_budget": served - alone <= BUDGET_SERVER and paged <= BUDGET_PAGE,
    }
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y-%m-%d}-idle-cpu-{platform.machine()}.json"
    (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
