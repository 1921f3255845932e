"""The benchmark scripts run and report what they measured (small sizes here; budgets are checked in bench/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_list_pages_benchmark_reports_json() -> None:
    result = subprocess.run(
        [sys.executable, "bench/list_pages.py", "--shots", "60", "--takes-per-shot", "3", "--repeat", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(result.stdout)
    assert (report["shots"], report["takes"]) == (60, 180)
    assert set(report["results"]) == {
        "shots_page_first",
        "shots_page_middle",
        "takes_page_middle",
        "takes_page_one_shot",
    }
    assert all(r["median_ms"] > 0 for r in report["results"].values())
    assert result.returncode == (0 if report["within_budget"] else 1)


def test_identity_benchmark_puts_the_face_model_above_the_look_descriptor() -> None:
    result = subprocess.run(
        [sys.executable, "bench/identity.py"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(result.stdout)
    old, new = report["results"]["look descriptor (old identity)"], report["results"]["face model (dlib ResNet)"]
    assert report["pairs"]["same_person"] > 0 and report["pairs"]["other_person"] > 0
    assert new["roc_auc"] > 0.95 > old["roc_auc"] and new["rank1"] > old["rank1"]
    assert new["faces_found"] > old["faces_found"]
