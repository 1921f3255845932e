"""SANA-WM at its real size on a CUDA GPU: peak VRAM, seconds per step and load time, bf16 against NF4.

Random weights (nothing is downloaded): the script builds the public architecture from the diffusers classes'
default sizes (the 2.66B-parameter SANA-WM DiT, the LTX-2 VAE, a Gemma-2 2B text encoder), saves it as a model
folder, then renders through the studio's own loader and backend once per memory profile, each in a fresh
process so one profile's memory cannot leak into the next:

- ``bf16``: everything resident in bfloat16 (the baseline);
- ``nf4``: transformer and text encoder in bitsandbytes NF4, resident;
- ``nf4-model``: NF4 with model CPU offload;
- ``nf4-group-stream``: NF4 with block-level group offload over CUDA streams.

Budget (docs/ARCHITECTURE.md): the best NF4+offload peak is at most 0.35x the bf16 peak. Each run also carries the
memory planner's estimate of its peak (``pipelines.memory_plan.estimate``) beside the measured one, so the planner
is checked against measurement on every card this runs on. Writes one JSON report to ``bench/results/`` named by
date and GPU, and prints it.

    python bench/gpu_sana_wm.py [--height 480] [--width 832] [--frames 81] [--steps 8] [--folder DIR]
    python bench/gpu_sana_wm.py --tiny   # the same script on the tiny test model on the CPU (a dry run)
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

BUDGET = 0.35
NF4 = {"transformer": "nf4", "text_encoder": "nf4"}
PROFILES = {
    "bf16": {"dtype": "bfloat16", "offload": "none", "quantization": {}},
    "nf4": {"dtype": "bfloat16", "offload": "none", "quantization": {"transformer": "nf4", "text_encoder": "nf4"}},
    "nf4-model": {
        "dtype": "bfloat16",
        "offload": "model",
        "quantization": {"transformer": "nf4", "text_encoder": "nf4"},
    },
    "nf4-group-stream": {
        "dtype": "bfloat16",
        "offload": "group-stream",
        "quantization": {"transformer": "nf4", "text_encoder": "nf4"},
    },
}
TINY_PROFILES = {
    "fp32": {"dtype": "float32", "offload": "none", "quantization": {}},
    "int8-group": {"dtype": "float32", "offload": "group", "quantization": {"transformer": "torchao-int8"}},
}


def build_real_size_folder(root: Path) -> Path:
    """The public SANA-WM architecture with random bf16 weights, saved as a diffusers folder."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        SanaWMPipeline,
        SanaWMTransformer3DModel,
    )
    from tiny_sana_wm import build_tokenizer
    from transformers import Gemma2Config, Gemma2Model

    folder = root / "sana-wm-random"
    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    with torch.device("cuda"):
        transformer = SanaWMTransformer3DModel().to(torch.bfloat16)
        vae = AutoencoderKLLTX2Video().to(torch.bfloat16)
        text_encoder = Gemma2Model(
            Gemma2Config(
                vocab_size=256000,
                hidden_size=2304,
                intermediate_size=9216,
                num_hidden_layers=26,
                num_attention_heads=8,
                num_key_value_heads=4,
                head_dim=256,
            )
        ).to(torch.bfloat16)
    pipe = SanaWMPipeline(
        tokenizer=build_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe, transformer, vae, text_encoder
    torch.cuda.empty_cache()
    return folder


def run_profile(folder: Path, profile: str, args: argparse.Namespace) -> dict:
    """One render under one memory profile (called in a fresh process)."""
    import numpy as np
    import torch
    from PIL import Image

    from pipelines.backend import GenerationRequest
    from pipelines.loading import LoadSpec, PipelineCache
    from pipelines.sana_wm import SanaWMBackend

    settings = (TINY_PROFILES if args.tiny else PROFILES)[profile]
    device = "cpu" if args.tiny else "cuda"
    spec = LoadSpec.create(
        folder,
        device=device,
        dtype=settings["dtype"],
        offload=settings["offload"],
        quantization=settings["quantization"],
    )
    backend = SanaWMBackend(spec, cache=PipelineCache())
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    backend.settle()
    backend.load(backend.name, __import__("diffusers").SanaWMPipeline, backend.settled)
    load_seconds = time.perf_counter() - start
    stamps: list[float] = []

    def progress(stage: str, step: int, total: int) -> None:
        if stage == "backbone":
            stamps.append(time.perf_counter())

    keyframe = Image.fromarray((np.random.default_rng(0).random((args.height, args.width, 3)) * 255).astype(np.uint8))
    request = GenerationRequest(
        prompt="a lighthouse on a cliff at dusk, waves below",
        width=args.width,
        height=args.height,
        fps=16,
        num_frames=args.frames,
        seed=0,
        keyframe=keyframe,
        camera="dolly-in",
        steps=args.steps,
    )
    result = backend.generate(request, progress=progress)
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    report = {
        "profile": profile,
        "load_spec": backend.settled.to_json(),
        "load_seconds": round(load_seconds, 2),
        "seconds_per_step": round(statistics.median(steps), 3) if steps else None,
        "backbone_seconds": round(result.timings["backbone"], 2),
        "frames": result.num_frames,
    }
    report |= planned(folder, settings, args)
    if device == "cuda":
        report["peak_vram_bytes"] = int(torch.cuda.max_memory_allocated())
        report["peak_vram_gib"] = round(report["peak_vram_bytes"] / 2**30, 2)
        report["measured_over_planned"] = round(report["peak_vram_bytes"] / report["planned_card_peak_bytes"], 3)
    else:
        report["peak_rss_bytes"] = result.peak_memory["process_rss_bytes"]
    return report


def planned(folder: Path, settings: dict, args: argparse.Namespace) -> dict:
    """The memory planner's card and host peaks for this profile at this size."""
    from pipelines.loading import sizes_of
    from pipelines.memory_plan import WorkSize, estimate
    from pipelines.model_folder import inspect_model_folder
    from pipelines.sana_wm import SanaWMBackend

    offload = {"group": "group-stream"}.get(settings["offload"], settings["offload"])
    quantization = {k: v for k, v in settings["quantization"].items() if v in ("int8", "nf4")}
    card, host = estimate(
        sizes_of(inspect_model_folder(folder)),
        SanaWMBackend.memory_geometry,
        WorkSize(args.width, args.height, args.frames),
        offload=offload,
        quantization=quantization,
        tiled=False,
    )
    return {"planned_card_peak_bytes": card, "planned_host_peak_bytes": host}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--folder", type=Path, help="reuse a model folder built by an earlier run")
    parser.add_argument("--tiny", action="store_true", help="dry run on the tiny test model, on the CPU")
    parser.add_argument("--run-profile", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    if args.run_profile:
        print(json.dumps(run_profile(args.folder, args.run_profile, args)))
        return 0

    import torch

    if args.tiny:
        args.height, args.width, args.frames, args.steps = 64, 64, 9, 2
    elif not torch.cuda.is_available():
        print("this benchmark needs a CUDA GPU (use --tiny for a dry run on the CPU)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        if args.folder is None:
            if args.tiny:
                from tiny_sana_wm import build_sana_wm_folder

                args.folder = build_sana_wm_folder(Path(scratch), with_refiner=False)
            else:
                args.folder = build_real_size_folder(Path(scratch))
        runs = []
        for profile in TINY_PROFILES if args.tiny else PROFILES:
            command = [sys.executable, __file__, "--run-profile", profile, "--folder", str(args.folder)]
            command += ["--height", str(args.height), "--width", str(args.width)]
            command += ["--frames", str(args.frames), "--steps", str(args.steps)] + (["--tiny"] if args.tiny else [])
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                runs.append({"profile": profile, "error": done.stderr.strip().splitlines()[-1:]})
                continue
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "gpu_sana_wm",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny else platform.machine(),
        "model": "tiny SANA-WM (dry run)" if args.tiny else "SANA-WM public architecture, random weights",
        "size": f"{args.width}x{args.height}",
        "frames": args.frames,
        "steps": args.steps,
        "runs": runs,
    }
    peaks = {run["profile"]: run.get("peak_vram_bytes") for run in runs}
    if peaks.get("bf16") and (peaks.get("nf4-model") or peaks.get("nf4-group-stream")):
        best = min(p for name, p in peaks.items() if name.startswith("nf4-") and p)
        report["nf4_offload_over_bf16"] = round(best / peaks["bf16"], 3)
        report["budget_ratio"] = BUDGET
        report["within_budget"] = report["nf4_offload_over_bf16"] <= BUDGET
    print(json.dumps(report, indent=2))
    if not args.tiny:
        args.out.mkdir(parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y-%m-%d}-gpu-sana-wm-{report['machine'].replace(' ', '-')}.json"
        (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report.get("within_budget", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
