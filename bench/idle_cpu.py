"""Idle is idle: the CPU an open studio page and its server use while nobody does anything.

A studio with a project of 8 shots (two rendered) is served, and three stretches of ``--seconds`` are measured in
one run, each as a share of one core (user + system CPU time, from ``/proc``):

1. the server alone, before any page is open;
2. the page: Debian's Chromium (headless, through Playwright) opens the studio, opens the project and each tab in
   turn, then sits on the Board; the server and every Chromium process are measured over the same stretch;
3. blank: the same tab then goes to ``about:blank``; Chromium (and the server) are measured again. This is what
   the browser costs with nothing in it, so the page's own cost is the page's stretch less this one.

The Chromium processes are listed again at the start and end of each stretch (a navigation can move the tab to
another renderer process): one that is there at both counts its CPU time between them; one that appears during
the stretch counts all of its CPU time; one that ends during it counts nothing.

Budget, as set when this benchmark was added (and listed with the benchmarks in the README): the server with an
idle page open uses at most 1% of a core more than the server alone (``BUDGET_SERVER``, compared against
server-with-page less server-alone); the page at most 2% of a core (``BUDGET_PAGE``, compared against Chromium with
the page less Chromium on ``about:blank``). The report's ``budgets`` names the numbers each budget is compared
against, the difference and whether it passes. Writes one JSON report to ``bench/results/`` named by date and
machine, and prints it; exits 1 when a budget is not met.

    python bench/idle_cpu.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

BUDGET_SERVER = 0.01
BUDGET_PAGE = 0.02
SETTLE_SECONDS = 3.0  # after the server starts, after the walk and after going to about:blank
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
    """``pid`` and every process below it (started by any of their threads)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        kids: list[str] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    kids += (task / "children").read_text().split()
        todo += sorted({int(k) for k in kids} - set(found) - set(todo))
    return found


def chromium_pids() -> list[int]:
    """Every Chromium process this script started (through Playwright's driver)."""
    pids = []
    for pid in children(os.getpid()):
        with contextlib.suppress(OSError):
            if "chrom" in Path(f"/proc/{pid}/comm").read_text():
                pids.append(pid)
    return pids


def stretch(groups: dict[str, Callable[[], list[int]]], seconds: float) -> dict[str, dict[str, float]]:
    """Each group's share of one core over ``seconds``, its processes listed at the start and again at the end."""
    start = {name: {pid: cpu_seconds([pid]) for pid in listed()} for name, listed in groups.items()}
    began = time.monotonic()
    time.sleep(seconds)
    end = {name: {pid: cpu_seconds([pid]) for pid in listed()} for name, listed in groups.items()}
    elapsed = time.monotonic() - began
    return {
        name: {
            "core_share": sum(cpu - start[name].get(pid, 0.0) for pid, cpu in end[name].items()) / elapsed,
            "processes": len(end[name]),
        }
        for name in groups
    }


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


def walk(tab: object, url: str) -> None:
    """Open the studio, the project and every tab, and end on the Board with the last replies in."""
    from test_ui_browser import open_project

    tab.goto(url)
    tab.wait_for_selector("#create-project", timeout=60_000)
    open_project(tab, "Harbour")
    for title in TABS:
        tab.get_by_role("tab", name=title, exact=True).click()
        tab.wait_for_timeout(700)
    tab.wait_for_timeout(SETTLE_SECONDS * 1000)


def measure(server_pid: int, url: str, seconds: float) -> dict[str, float]:
    """The three stretches against a running studio: core shares by name (see the module's docstring)."""
    from playwright.sync_api import sync_playwright
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS

    server = lambda: children(server_pid)  # noqa: E731
    time.sleep(SETTLE_SECONDS)
    alone = stretch({"server": server}, seconds)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            walk(tab, url)
            page = stretch({"server": server, "chromium": chromium_pids}, seconds)
            tab.goto("about:blank")
            tab.wait_for_timeout(SETTLE_SECONDS * 1000)
            blank = stretch({"server": server, "chromium": chromium_pids}, seconds)
        finally:
            browser.close()
    return {
        "server_alone_core_share": alone["server"]["core_share"],
        "server_with_page_core_share": page["server"]["core_share"],
        "server_with_blank_core_share": blank["server"]["core_share"],
        "chromium_with_page_core_share": page["chromium"]["core_share"],
        "chromium_on_blank_core_share": blank["chromium"]["core_share"],
        "chromium_processes_with_page": page["chromium"]["processes"],
        "chromium_processes_on_blank": blank["chromium"]["processes"],
    }


def budgets(shares: dict[str, float]) -> dict[str, dict[str, object]]:
    """Each budget with the two numbers it is compared against, their difference and whether it passes."""
    checks = {
        "server": ("server_with_page_core_share", "server_alone_core_share", BUDGET_SERVER),
        "page": ("chromium_with_page_core_share", "chromium_on_blank_core_share", BUDGET_PAGE),
    }
    report = {}
    for name, (measured, baseline, budget) in checks.items():
        added = shares[measured] - shares[baseline]
        report[name] = {
            "compared": f"{measured} - {baseline}",
            "core_share": round(added, 4),
            "at_most": budget,
            "passes": added <= budget,
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from test_ui_client import start_app

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        make_studio(data)
        process, url = start_app(data)
        try:
            shares = measure(process.pid, url, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=20)
    checks = budgets(shares)
    report = {
        "benchmark": "idle_cpu",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds": args.seconds,
        **{name: round(value, 4) if isinstance(value, float) else value for name, value in shares.items()},
        "page_own_core_share": round(
            shares["chromium_with_page_core_share"] - shares["chromium_on_blank_core_share"], 4
        ),
        "budgets": checks,
        "within_budget": all(check["passes"] for check in checks.values()),
    }
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y-%m-%d}-idle-cpu-{platform.machine()}.json"
    (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
