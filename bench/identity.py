"""Identity on photographs of real people: the look descriptor (the old identity score) against the face model.

The photo set is built from packages, nothing made here: the public-domain portraits in ``tests/photos/`` (from
the face_recognition source distribution and matplotlib's sample data; see its README) and scikit-image's
astronaut. Each portrait is a reference; the probes are every *other* portrait as it would reach the scorer --
the photo itself, mirrored, and as a frame of a 640x384 animatic take (the picture moved and scaled by a dolly-in).
Pairs of the same person are positives, pairs of different people negatives; a pair from one photograph is never
used.

For each method, side by side in one run:
- ROC-AUC of its score over positives and negatives (0.5 is a coin toss);
- accuracy at its threshold (the face model's own: 0.5 calibrated, dlib's 0.6 distance; the descriptor has none,
  so its best threshold on this very set is used, which flatters it);
- rank-1: for each probe, is the best-scoring reference the same person;
- detection rate (faces found in the probes: OpenCV Haar for the descriptor's face crops, dlib HOG for the model)
  and milliseconds per probe frame.

    python bench/identity.py [--out FILE.json]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEOPLE = {"obama-1": "Obama", "obama-2": "Obama", "obama-3": "Obama", "biden-1": "Biden", "hopper-1": "Hopper"}


def roc_auc(positives: list[float], negatives: list[float]) -> float:
    """The probability that a random positive outscores a random negative (ties count half)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def best_accuracy(positives: list[float], negatives: list[float]) -> tuple[float, float]:
    candidates = sorted(set(positives + negatives))
    best = (0.0, 0.0)
    for threshold in candidates:
        right = sum(p >= threshold for p in positives) + sum(n < threshold for n in negatives)
        best = max(best, (right / (len(positives) + len(negatives)), threshold))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image
    from skimage import data

    from pipelines.animatic import AnimaticBackend
    from pipelines.backend import GenerationRequest
    from pipelines.consistency import look
    from pipelines.embedders import OfflineEmbedder, detect_faces
    from pipelines.faces import SAME_PERSON_DISTANCE, load_face_recognizer, nearest, same_person

    portraits = {name: Image.open(ROOT / "tests" / "photos" / f"{name}.jpg").convert("RGB") for name in PEOPLE}
    portraits["astronaut"] = Image.fromarray(data.astronaut())
    person = {name: PEOPLE.get(name, "Collins") for name in portraits}

    def frame_of_take(picture: Image.Image) -> np.ndarray:
        request = GenerationRequest(
            prompt="a portrait",
            width=640,
            height=384,
            fps=16,
            num_frames=17,
            keyframe=picture,
            camera="dolly-in",
            seed=3,
        )
        return AnimaticBackend().generate(request).frames[8]

    probes = []
    for name, picture in portraits.items():
        probes.append((name, "photo", np.asarray(picture)))
        probes.append((name, "mirrored", np.asarray(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT))))
        probes.append((name, "take frame", frame_of_take(picture)))

    embedder = OfflineEmbedder()
    recognizer = load_face_recognizer()
    references = {name: recognizer.faces(picture)[0].descriptor for name, picture in portraits.items()}

    def descriptor_scores(probe: np.ndarray) -> dict[str, float]:
        return {
            name: look(probe[None], {name: [picture]}, embedder, count=1).value for name, picture in portraits.items()
        }

    def model_scores(probe: np.ndarray) -> tuple[dict[str, float], bool]:
        faces = recognizer.faces(probe)
        if not faces:
            return {name: 0.0 for name in portraits}, False
        return {name: same_person(nearest(faces, [row])) for name, row in references.items()}, True

    methods: dict[str, dict[str, object]] = {}
    for method in ("look descriptor (old identity)", "face model (dlib ResNet)"):
        positives: list[float] = []
        negatives: list[float] = []
        rank1 = detected = 0
        times = []
        for name, _kind, probe in probes:
            started = time.perf_counter()
            if method.startswith("look"):
                scores = descriptor_scores(probe)
                found = bool(detect_faces(probe))
            else:
                scores, found = model_scores(probe)
            times.append((time.perf_counter() - started) * 1000)
            detected += found
            others = {ref: value for ref, value in scores.items() if ref != name}  # never a pair from one photo
            for ref, value in others.items():
                (positives if person[ref] == person[name] else negatives).append(value)
            if any(person[ref] == person[name] for ref in others):
                rank1 += person[max(others, key=others.get)] == person[name]
        identifiable = sum(1 for name, _, _ in probes if sum(person[r] == person[name] for r in portraits) > 1)
        if method.startswith("face"):
            right = sum(p >= 0.5 for p in positives) + sum(n < 0.5 for n in negatives)
            accuracy, threshold = right / (len(positives) + len(negatives)), 0.5
        else:
            accuracy, threshold = best_accuracy(positives, negatives)
        methods[method] = {
            "roc_auc": round(roc_auc(positives, negatives), 3),
            "accuracy": round(accuracy, 3),
            "threshold": round(threshold, 3),
            "threshold_is": "the model's own (dlib distance 0.6)" if method.startswith("face") else "best on this set",
            "rank1": round(rank1 / identifiable, 3),
            "same_person_mean": round(statistics.fmean(positives), 3),
            "other_person_mean": round(statistics.fmean(negatives), 3),
            "faces_found": round(detected / len(probes), 3),
            "ms_per_frame": round(statistics.median(times), 1),
        }

    report = {
        "benchmark": "identity",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "people": len(set(person.values())),
        "portraits": len(portraits),
        "probes": len(probes),
        "pairs": {"same_person": len(positives), "other_person": len(negatives)},
        "dlib_same_person_distance": SAME_PERSON_DISTANCE,
        "results": methods,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
