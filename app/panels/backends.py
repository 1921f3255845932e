"""Settings: which video and keyframe backends can run here and why not, how each would be loaded here, and the
memory plan for a card that is not here."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.panels.common import Context, user_errors
from pipelines.registry import any_backend_class, backend_names, picture_backend_names
from projects.backends import available_backends, memory_plan, memory_profile, models_dir
from projects.errors import InvalidInput, StudioError

COLUMNS = ["backend", "draws", "ready", "refiner", "max frames", "needs a GPU", "why", "weights", "memory plan"]
WIDTHS = ["9%", "7%", "5%", "8%", "6%", "6%", "27%", "14%", "18%"]


def rows(ctx: Context) -> list[list[Any]]:
    return [
        [
            b.name,
            "videos" if b.kind == "video" else "keyframes",
            "yes" if b.available else "no",
            _refiner(b),
            b.capabilities.max_frames if b.kind == "video" else "",
            "yes" if b.capabilities.needs_gpu else "no",
            b.reason,
            b.source or "",
            _profile(ctx, b.name) if b.available else "",
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


def planned_backends() -> list[str]:
    """The backends with weights, the ones a memory plan is about."""
    names = backend_names() + picture_backend_names()
    return [name for name in names if getattr(any_backend_class(name), "needs_weights", False)]


def plan_text(ctx: Context, name: str, vram: float | None, ram: float | None, refiner: bool) -> str:
    """The plan for ``name`` on a card of ``vram`` GiB (host RAM ``ram`` GiB, or unknown when empty or 0)."""
    try:
        plan = memory_plan(ctx.studio, name, vram_gib=vram, ram_gib=ram or None, refiner=refiner)
    except StudioError as exc:
        return f"cannot plan: {exc}"
    return plan.text()


def build(ctx: Context) -> dict[str, Any]:
    w: dict[str, Any] = {}
    gr.Markdown(
        f"Model folders are looked for in `{models_dir(ctx.studio)}` (or `$CONTINUITY_MODELS`), or named by "
        "`CONTINUITY_MODEL_SANA_WM`, `CONTINUITY_MODEL_WAN_I2V`, `CONTINUITY_MODEL_WAN_VACE`. The studio downloads "
        "weights only when asked: `python app.py fetch-weights BACKEND REPO`. Loading is planned per machine "
        "from each component's real size: everything on the GPU in bf16 when it fits, else offloaded one "
        "component at a time, quantizing only what does not fit alone; each take records the choice and why."
    )
    # Long reasons wrap within their column, so every column stays on the screen.
    w["table"] = gr.Dataframe(
        headers=COLUMNS,
        value=rows(ctx),
        interactive=False,
        wrap=True,
        column_widths=WIDTHS,
        elem_id="backends-table",
    )
    w["refresh"] = gr.Button("Look again")
    with gr.Accordion("Plan for a card", open=False, elem_id="plan-card"):
        gr.Markdown("What a backend would need on a card you are thinking of renting, before anything downloads.")
        with gr.Row():
            w["plan_backend"] = gr.Dropdown(planned_backends(), value="sana-wm", label="Backend")
            w["plan_vram"] = gr.Number(24, label="Card memory (GiB)", minimum=1, maximum=4096)
            w["plan_ram"] = gr.Number(0, label="Host RAM (GiB, 0 for unknown)", minimum=0, maximum=4096)
            w["plan_refiner"] = gr.Checkbox(False, label="With the refiner")
        w["plan"] = gr.Button("Plan")
        w["plan_text"] = gr.Code(label="The plan", language=None, elem_id="plan-text")
    with gr.Accordion("Render farm (Ray)", open=False, elem_id="farm"):
        gr.Markdown(
            "Render the queue on every GPU of this machine, or on the machines of a Ray cluster you run (see the "
            "README's *Renting a farm*): one worker per GPU, each keeping its model loaded. The studio stays the "
            "only one that writes the project; its own worker pauses while the farm runs."
        )
        with gr.Row():
            w["farm_address"] = gr.Textbox(
                label="Ray cluster", placeholder="empty: this machine; or ray://HOST:10001", elem_id="farm-address"
            )
            w["farm_gpus"] = gr.Number(1, label="GPUs per worker", minimum=0.1, maximum=64, elem_id="farm-gpus")
            w["farm_workers"] = gr.Number(
                0, label="Workers (0: one per GPU)", minimum=0, maximum=1024, precision=0, elem_id="farm-workers"
            )
        with gr.Row():
            w["farm_start"] = gr.Button("Start the farm", variant="primary", elem_id="farm-start")
            w["farm_stop"] = gr.Button("Stop the farm", elem_id="farm-stop")
            w["farm_look"] = gr.Button("Look again", elem_id="farm-look")
        w["farm_status"] = gr.Markdown(farm_status(ctx), elem_id="farm-status")
    return w


def farm_status(ctx: Context) -> str:
    if ctx.farm is None:
        return "The farm runs from a served studio (`python app.py`), or from `python app.py farm`."
    return ctx.farm.status()


def wire(ctx: Context, w: dict[str, Any]) -> None:
    @user_errors
    def start(address: str, gpus: float | None, workers: float | None) -> str:
        if ctx.farm is None:
            raise InvalidInput("the farm runs from a served studio (python app.py)", "farm")
        count = None if not workers else int(workers)
        return ctx.farm.start(address, workers=count, gpus_per_worker=float(gpus or 1))

    @user_errors
    def stop() -> str:
        return ctx.farm.stop() if ctx.farm is not None else farm_status(ctx)

    w["farm_start"].click(
        start,
        inputs=[w["farm_address"], w["farm_gpus"], w["farm_workers"]],
        outputs=w["farm_status"],
        api_name="start_farm",
        concurrency_limit=1,
    )
    w["farm_stop"].click(stop, outputs=w["farm_status"], api_name="stop_farm", concurrency_limit=1)
    w["farm_look"].click(lambda: farm_status(ctx), outputs=w["farm_status"], api_name="farm_status")
    w["refresh"].click(lambda: rows(ctx), outputs=w["table"], api_name="backends")
    w["plan"].click(
        lambda name, vram, ram, refiner: plan_text(ctx, name, vram, ram, refiner),
        inputs=[w["plan_backend"], w["plan_vram"], w["plan_ram"], w["plan_refiner"]],
        outputs=w["plan_text"],
        api_name="plan",
    )
