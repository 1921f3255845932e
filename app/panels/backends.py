"""Settings: which video and keyframe backends can run here and why not, and what a memory profile means."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels.common import Context
from projects.backends import available_backends, memory_profile, models_dir

COLUMNS = ["backend", "draws", "ready", "why", "weights", "memory profile", "refiner", "max frames", "needs a GPU"]


def rows(ctx: Context) -> list[list[Any]]:
    return [
        [
            b.name,
            "videos" if b.kind == "video" else "keyframes",
            "yes" if b.available else "no",
            b.reason,
            b.source or "",
            _profile(ctx, b.name) if b.available else "",
            _refiner(b),
            b.capabilities.max_frames if b.kind == "video" else "",
            "yes" if b.capabilities.needs_gpu else "no",
        ]
        for b in available_backends(ctx.studio)
    ]


def _refiner(info: Any) -> str:
    """The refiner column: whether the backend has one and its weights are here."""
    if info.kind != "video":
        return ""
    if not info.capabilities.refiner:
        return "no"
    return "installed" if info.refiner is not None and info.refiner.installed else "not installed"


def _profile(ctx: Context, name: str) -> str:
    try:
        found = memory_profile(ctx.studio, name)
    except Exception as exc:  # noqa: BLE001 - a row of a table: say what went wrong, keep the rest
        return f"cannot tell: {exc}"
    if found is None:
        return "runs on the CPU, no weights"
    spec, reason = found
    quantized = ", ".join(f"{k} {v}" for k, v in spec["quantization"].items()) or "no quantization"
    return f"{spec['device']}, {spec['dtype']}, {quantized}, offload {spec['offload']}: {reason}"


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    gr.Markdown(
        f"Model folders are looked for in `{models_dir(ctx.studio)}` (or `$CONTINUITY_MODELS`), or named by "
        "`CONTINUITY_MODEL_SANA_WM`, `CONTINUITY_MODEL_WAN_I2V`, `CONTINUITY_MODEL_WAN_VACE`. The studio never "
        "downloads weights. Loading is chosen per machine: everything on the GPU in bf16 when it fits, else "
        "NF4, else NF4 with offload; each take records the choice and why."
    )
    w["table"] = gr.Dataframe(headers=COLUMNS, value=rows(ctx), interactive=False, elem_id="backends-table")
    w["refresh"] = gr.Button("Look again")
    return w


def wire(ctx: Context, w: dict[str, Any]) -> None:
    w["refresh"].click(lambda: rows(ctx), outputs=w["table"], api_name="backends")
