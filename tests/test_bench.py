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


def test_keyframe_overhead_benchmark_draws_the_same_picture_both_ways_with_one_load() -> None:
    result = subprocess.run(
        [sys.executable, "bench/keyframe_overhead.py", "--candidates", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    report = json.loads(result.stdout)
    samples = report["samples_s"]
    assert {side: len(times) for side, times in samples.items()} == {
        "direct": 1,
        "studio": 1,
        "studio_without_scoring": 1,
    }
    # The studio's candidate and the direct call with its seed are one picture: the two sides make the same call.
    assert report["same_pictures"] == "1 of 1" and report["pipeline_loads"] == 1
    assert abs(report["ratio"] - samples["studio"][0] / samples["direct"][0]) < 0.01
    assert report["recorded_timings_median_s"]["studio: keyframe"] > 0
    # Scoring is the studio's work outside the pipeline call, and it is timed on its own.
    outside = report["outside_the_call_median_s"]
    assert outside["studio"] > outside["studio_without_scoring"] and report["score_median_s"] > 0
    assert report["machine"]["cpu_count"] >= 1 and report["finding"]
    assert result.returncode == (0 if report["within_budget"] else 1)
