"""Memory plans: what a backend's weights need on a given card, and how the studio would load them there.

A plan is made from each component's real parameter count (read from the safetensors headers of a model folder,
or from a meta-device build of the published config where the weights are not here: :mod:`pipelines.published`)
and from the work it does at a size (the denoiser's activations grow with the latent tokens, the VAE's decode with
the pixels). It is computed without loading anything, for this machine's card or for one that is not here.

The order of preference, the first that fits wins:

1. everything resident in bf16;
2. bf16 with model CPU offload (one component on the card at a time);
3. model offload, with int8 only on the components that do not fit alone in bf16;
4. model offload, with NF4 on the components that do not fit alone in int8 either;
5. bf16 with block-level group offload over CUDA streams (one block on the card at a time, the next one
   copied in while it runs);
6. model offload with NF4 on every large component, where host RAM cannot hold the bf16 weights.

Nothing is quantized that fits on the card in bf16 (unless host RAM is short), and quantization comes before
group offload because streaming every weight across PCIe at every step costs more time than the small loss of
int8. At any rung the
VAE decodes in tiles when its untiled decode would not fit. A plan that fits nowhere says so, with what would:
a smaller size, the refiner off, a bigger card.

Host RAM: the studio's loader reads every unquantized weight into host memory before placing it (and the
offloaded ones stay there), so a plan also needs that much free host RAM.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field, replace
from typing import Any

GIB = 2**30
CONTEXT_BYTES = int(0.75 * GIB)  # the CUDA context and cuBLAS workspaces, before any weight
HOST_BASE_BYTES = 2 * GIB  # the studio's own process: Python, torch, Gradio
USABLE = 0.94  # what of the rest the caching allocator can be counted on to place (fragmentation)
BYTES_PER_PARAMETER = {"bfloat16": 2.0, "float16": 2.0, "float32": 4.0, "int8": 1.05, "nf4": 0.56}
TEXT_WORK_BYTES = int(0.5 * GIB)  # a text encoder's activations for one prompt of a few hundred tokens
DENOISER_ACTIVATION_WIDTH = 10  # live hidden-sized tensors per token inside one block (q, k, v, out, MLP, residual)
VAE_ACTIVATION_COPIES = 2  # the widest decoder layer's input and output, at full resolution
VAE_TILE = (512, 512, 16)  # width, height, frames of one tile when tiled


@dataclass(frozen=True)
class ComponentSize:
    """One component of a pipeline as the planner sees it."""

    name: str  # as in model_index.json: transformer, transformer_2, text_encoder, vae, connectors, ...
    stage: str  # "backbone" or "refiner"
    class_name: str
    parameters: int
    largest_block: int  # the largest repeated block's parameters (all of them where it has no blocks)
    quantizable: bool  # a diffusers or transformers network bitsandbytes can quantize
    measured_from: str  # "weights" (the folder's safetensors headers) or "config" (a meta-device build)

    @property
    def role(self) -> str:
        if self.name.startswith("transformer"):
            return "denoiser"
        if self.name.startswith("vae"):
            return "vae"
        if self.name.startswith(("text_encoder", "connectors", "image_encoder")):
            return "encoder"
        return "other"

    @property
    def label(self) -> str:
        return self.name if self.stage == "backbone" else f"refiner {self.name}"


@dataclass(frozen=True)
class Geometry:
    """How a backend's work grows with the size it renders at (from its published architecture)."""

    spatial: int  # VAE spatial compression
    temporal: int  # VAE temporal compression (1 for pictures)
    patch: tuple[int, int, int]  # the denoiser's patch (frames, height, width) over the latents
    hidden: int  # the denoiser's hidden size
    guidance_batch: int = 2  # 2 where classifier-free guidance runs the cond and uncond halves together
    vae_channels: int = 128  # channels of the decoder's widest full-resolution layer
    vae_frames: int | None = None  # frames the decoder holds at once untiled (None: all of them)
    context_pictures: int = 0  # input pictures whose tokens join the denoiser's sequence (edit models)
    refiner: Geometry | None = None  # the refiner's own, where its denoiser differs


@dataclass(frozen=True)
class WorkSize:
    width: int
    height: int
    frames: int = 1

    def latent_tokens(self, geometry: Geometry) -> int:
        pt, ph, pw = geometry.patch
        latent_frames = (self.frames - 1) // geometry.temporal + 1 if geometry.temporal > 1 else self.frames
        per_frame = math.ceil(self.height / geometry.spatial / ph) * math.ceil(self.width / geometry.spatial / pw)
        return math.ceil(latent_frames / pt) * per_frame * (1 + geometry.context_pictures)

    def denoiser_bytes(self, geometry: Geometry) -> int:
        tokens = self.latent_tokens(geometry) * geometry.guidance_batch
        return int(tokens * geometry.hidden * 2 * DENOISER_ACTIVATION_WIDTH)

    def vae_bytes(self, geometry: Geometry, *, tiled: bool) -> int:
        width, height, frames = self.width, self.height, self.frames
        if geometry.vae_frames is not None:
            frames = min(frames, geometry.vae_frames)
        if tiled:
            tile_w, tile_h, tile_f = VAE_TILE
            width, height, frames = min(width, tile_w), min(height, tile_h), min(frames, tile_f)
        return int(frames * width * height * geometry.vae_channels * 2 * VAE_ACTIVATION_COPIES)

    def smaller(self) -> WorkSize:
        """The next smaller size worth suggesting: fewer frames first, then a smaller picture."""
        if self.frames > 17:
            return replace(self, frames=(self.frames - 1) // 2 + 1)
        return replace(self, width=max(64, self.width // 2), height=max(64, self.height // 2))

    def to_json(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height, "frames": self.frames}


# For a model folder whose backend states no geometry: a Wan-like video DiT at the studio's default size.
GENERIC_GEOMETRY = Geometry(spatial=8, temporal=4, patch=(1, 2, 2), hidden=3072, vae_channels=96, vae_frames=4)
GENERIC_SIZE = WorkSize(640, 384, 81)


@dataclass(frozen=True)
class Rung:
    name: str
    offload: str  # a LoadSpec offload mode
    quantize: str | None  # None, "int8" or "nf4": for the components that do not fit alone


RUNGS = (
    Rung("resident", "none", None),
    Rung("model offload", "model", None),
    Rung("model offload, int8 where needed", "model", "int8"),
    Rung("model offload, NF4 where needed", "model", "nf4"),
    Rung("group offload over CUDA streams", "group-stream", None),
    Rung("model offload, NF4 on every large component", "model", "nf4-all"),
)


@dataclass(frozen=True)
class Placement:
    """One component in a plan: its size, how it is held, and its weights on the card and in host RAM."""

    component: ComponentSize
    quantization: str  # "none", "int8", "nf4"
    placement: str  # "resident", "offloaded by model", "offloaded by group (streams)"
    weight_bytes: int
    work_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.component.name,
            "stage": self.component.stage,
            "class": self.component.class_name,
            "parameters": self.component.parameters,
            "measured_from": self.component.measured_from,
            "quantization": self.quantization,
            "placement": self.placement,
            "weights_gib": round(self.weight_bytes / GIB, 2),
            "work_gib": round(self.work_bytes / GIB, 2),
        }


@dataclass(frozen=True)
class Plan:
    """A backend's memory plan on a card: whether it fits, how, the peaks, and why."""

    backend: str
    vram: int
    ram: int | None
    size: WorkSize
    refiner: bool
    fits: bool
    rung: str | None
    offload: str | None
    vae_tiling: bool
    placements: tuple[Placement, ...]
    card_peak: int
    host_peak: int
    reason: str
    rejected: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()

    def quantization(self, stage: str = "backbone") -> dict[str, str]:
        """``{component: scheme}`` for one stage's load spec (quantized components only)."""
        return {
            p.component.name: p.quantization
            for p in self.placements
            if p.component.stage == stage and p.quantization != "none"
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "card_gib": round(self.vram / GIB, 1),
            "host_ram_gib": round(self.ram / GIB, 1) if self.ram is not None else None,
            "size": self.size.to_json(),
            "refiner": self.refiner,
            "fits": self.fits,
            "plan": self.rung,
            "offload": self.offload,
            "vae_tiling": self.vae_tiling,
            "quantization": {"backbone": self.quantization("backbone"), "refiner": self.quantization("refiner")},
            "card_peak_gib": round(self.card_peak / GIB, 1),
            "host_peak_gib": round(self.host_peak / GIB, 1),
            "components": [p.to_json() for p in self.placements],
            "why": self.reason,
            "rejected": list(self.rejected),
            "would_fit": list(self.suggestions),
        }

    def text(self) -> str:
        """The plan as a person reads it."""
        head = f"{self.backend} on a {gib(self.vram)} card"
        head += f" with {gib(self.ram)} of host RAM" if self.ram is not None else ""
        head += f", {self.size.width}x{self.size.height}, {self.size.frames} frame(s)"
        head += ", with the refiner" if self.refiner else ""
        lines = [head, ""]
        if self.fits:
            lines.append(f"plan: {self.rung} (offload {self.offload}; VAE {'tiled' if self.vae_tiling else 'whole'})")
        else:
            lines.append("plan: does not fit")
        lines.append(textwrap.fill(f"why: {self.reason}", 110, subsequent_indent="     "))
        lines.append(f"peak: {gib(self.card_peak)} on the card, {gib(self.host_peak)} of host RAM")
        lines.append("")
        width = max(len(p.component.label) for p in self.placements) if self.placements else 10
        lines.append(f"{'component':<{width}}  {'parameters':>11}  {'from':<7}  {'weights':>9}  {'work':>8}  how")
        for p in self.placements:
            how = p.placement if p.quantization == "none" else f"{p.quantization}, {p.placement}"
            lines.append(
                f"{p.component.label:<{width}}  {p.component.parameters / 1e9:>10.2f}B  {p.component.measured_from:<7}"
                f"  {gib(p.weight_bytes):>9}  {gib(p.work_bytes):>8}  {how}"
            )
        if self.rejected:
            lines += ["", "not chosen:"] + [f"  {line}" for line in self.rejected]
        if self.suggestions:
            lines += ["", "would fit:"] + [f"  {line}" for line in self.suggestions]
        return "\n".join(lines)


def gib(value: int | None) -> str:
    return "?" if value is None else f"{value / GIB:.1f} GiB"


def weight_bytes(component: ComponentSize, scheme: str, dtype: str = "bfloat16") -> int:
    return int(component.parameters * BYTES_PER_PARAMETER[dtype if scheme == "none" else scheme])


def _work(component: ComponentSize, size: WorkSize, geometry: Geometry, *, tiled: bool) -> int:
    geometry = geometry.refiner if component.stage == "refiner" and geometry.refiner is not None else geometry
    role = component.role
    if role == "denoiser":
        return size.denoiser_bytes(geometry)
    if role == "vae":
        return size.vae_bytes(geometry, tiled=tiled)
    if role == "encoder":
        return TEXT_WORK_BYTES
    return 0


def _usable(vram: int) -> int:
    return int(max(0, vram - CONTEXT_BYTES) * USABLE)


@dataclass
class _Trial:
    rung: Rung
    tiled: bool
    placements: list[Placement] = field(default_factory=list)
    card_peak: int = 0
    host_peak: int = 0


def _try(
    rung: Rung,
    components: list[ComponentSize],
    size: WorkSize,
    geometry: Geometry,
    vram: int,
    *,
    tiled: bool,
    fixed: dict[str, str],
) -> _Trial:
    usable = _usable(vram)
    trial = _Trial(rung, tiled)
    for component in components:
        work = _work(component, size, geometry, tiled=tiled)
        scheme = "none"
        if component.stage == "backbone" and component.name in fixed:
            scheme = fixed[component.name]
        elif rung.quantize and component.quantizable and component.role in ("denoiser", "encoder"):
            if rung.quantize == "nf4-all":
                scheme = "nf4"
            elif weight_bytes(component, "none") + work > usable:
                scheme = "int8"
                if rung.quantize == "nf4" and weight_bytes(component, "int8") + work > usable:
                    scheme = "nf4"
        how = {"none": "resident", "model": "offloaded by model", "group-stream": "offloaded by group (streams)"}
        trial.placements.append(Placement(component, scheme, how[rung.offload], weight_bytes(component, scheme), work))
    weights = [p.weight_bytes for p in trial.placements]
    works = [p.work_bytes for p in trial.placements]
    if rung.offload == "none":
        trial.card_peak = sum(weights) + max(works, default=0)
    elif rung.offload == "model":
        trial.card_peak = max((w + k for w, k in zip(weights, works, strict=True)), default=0)
    else:  # group offload: the running block and the next one being copied in
        trial.card_peak = max(
            (
                2 * weight_bytes(replace(p.component, parameters=p.component.largest_block), p.quantization)
                + p.work_bytes
                for p in trial.placements
            ),
            default=0,
        )
    trial.card_peak += CONTEXT_BYTES
    trial.host_peak = HOST_BASE_BYTES + sum(
        p.weight_bytes for p in trial.placements if p.quantization == "none" or rung.offload != "none"
    )
    return trial


def _fits(trial: _Trial, vram: int, ram: int | None) -> tuple[bool, str]:
    needed = trial.card_peak - CONTEXT_BYTES
    if needed > _usable(vram):
        return False, f"needs {gib(trial.card_peak)} on a {gib(vram)} card"
    if ram is not None and trial.host_peak > ram:
        return False, f"needs {gib(trial.host_peak)} of host RAM, {gib(ram)} there"
    return True, ""


def estimate(
    components: list[ComponentSize],
    geometry: Geometry,
    size: WorkSize,
    *,
    offload: str,
    quantization: dict[str, str],
    tiled: bool,
) -> tuple[int, int]:
    """The planner's card and host peaks (bytes) for one given way of loading (to hold against a measurement)."""
    rung = next((r for r in RUNGS if r.offload == offload and r.quantize is None), None)
    if rung is None:
        raise ValueError(f"the planner has no estimate for offload {offload!r}")
    trial = _try(rung, components, size, geometry, 2**62, tiled=tiled, fixed=quantization)
    return trial.card_peak, trial.host_peak


def plan_memory(
    backend: str,
    components: list[ComponentSize],
    geometry: Geometry,
    size: WorkSize,
    *,
    vram: int,
    ram: int | None = None,
    refiner: bool = False,
    suggest: bool = True,
    fixed: dict[str, str] | None = None,
) -> Plan:
    """The first rung of :data:`RUNGS` that fits ``vram`` bytes on the card (and ``ram`` of host RAM, when
    given) for work at ``size``; with the VAE whole where it fits, tiled where only that fits. A plan that does
    not fit says what would (``suggest``). ``fixed`` holds quantizations asked for by name (backbone components),
    kept on every rung."""
    fixed = dict(fixed or {})
    if vram <= 0:
        raise ValueError("a card's memory must be more than 0")
    rejected = []
    for rung in RUNGS:
        why = ""
        for tiled in (False, True):
            trial = _try(rung, components, size, geometry, vram, tiled=tiled, fixed=fixed)
            fits, why = _fits(trial, vram, ram)
            if fits:
                return _plan(backend, trial, size, vram, ram, refiner, True, _reason(trial, size, geometry), rejected)
        rejected.append(f"{rung.name}: {why}")
    last = _try(RUNGS[-1], components, size, geometry, vram, tiled=True, fixed=fixed)
    suggestions = _suggestions(backend, components, geometry, size, vram, ram, refiner) if suggest else []
    reason = f"no plan fits: {rejected[-1].split(': ', 1)[1]}"
    return _plan(backend, last, size, vram, ram, refiner, False, reason, rejected, suggestions)


def _plan(
    backend: str,
    trial: _Trial,
    size: WorkSize,
    vram: int,
    ram: int | None,
    refiner: bool,
    fits: bool,
    reason: str,
    rejected: list[str],
    suggestions: list[str] | None = None,
) -> Plan:
    return Plan(
        backend=backend,
        vram=vram,
        ram=ram,
        size=size,
        refiner=refiner,
        fits=fits,
        rung=trial.rung.name if fits else None,
        offload=trial.rung.offload if fits else None,
        vae_tiling=trial.tiled,
        placements=tuple(trial.placements),
        card_peak=trial.card_peak,
        host_peak=trial.host_peak,
        reason=reason,
        rejected=tuple(rejected),
        suggestions=tuple(suggestions or ()),
    )


def _reason(trial: _Trial, size: WorkSize, geometry: Geometry) -> str:
    total = sum(weight_bytes(p.component, "none") for p in trial.placements)
    parts = [f"{gib(total)} of bf16 weights"]
    rung = trial.rung
    if rung.offload == "none":
        parts.append("all resident with room for the work")
    elif rung.offload == "model":
        biggest = max(trial.placements, key=lambda p: p.weight_bytes + p.work_bytes)
        parts.append(f"do not fit at once; the largest step ({biggest.component.label}) fits alone")
    else:
        parts.append("and the largest component does not fit alone even in NF4; blocks are streamed")
    quantized = [f"{p.component.label} {p.quantization}" for p in trial.placements if p.quantization != "none"]
    if quantized and rung.quantize == "nf4-all":
        parts.append(f"host RAM cannot hold them in bf16, so NF4: {', '.join(quantized)}")
    elif quantized:
        parts.append(f"quantized because they do not fit alone in bf16: {', '.join(quantized)}")
    if trial.tiled:
        vae = next((p for p in trial.placements if p.component.role == "vae"), None)
        if vae is not None:
            whole = size.vae_bytes(geometry, tiled=False)
            parts.append(f"the VAE decodes in tiles (whole it would need {gib(whole)})")
    return "; ".join(parts)


def _suggestions(
    backend: str,
    components: list[ComponentSize],
    geometry: Geometry,
    size: WorkSize,
    vram: int,
    ram: int | None,
    refiner: bool,
) -> list[str]:
    found = []
    smaller = size
    for _ in range(6):
        smaller = smaller.smaller()
        plan = plan_memory(backend, components, geometry, smaller, vram=vram, ram=ram, refiner=refiner, suggest=False)
        if plan.fits:
            found.append(f"a smaller size: {smaller.width}x{smaller.height}, {smaller.frames} frame(s) ({plan.rung})")
            break
    if refiner:
        backbone = [c for c in components if c.stage == "backbone"]
        plan = plan_memory(backend, backbone, geometry, size, vram=vram, ram=ram, suggest=False)
        if plan.fits:
            found.append(f"the refiner off ({plan.rung})")
    for card in (8, 12, 16, 24, 32, 48, 80, 96, 141, 192):
        bigger = card * GIB
        if bigger > vram:
            plan = plan_memory(
                backend, components, geometry, size, vram=bigger, ram=ram, refiner=refiner, suggest=False
            )
            if plan.fits:
                found.append(f"a {card} GB card ({plan.rung})")
                break
    if ram is not None:
        plan = plan_memory(backend, components, geometry, size, vram=vram, refiner=refiner, suggest=False)
        if plan.fits:
            found.append(f"more host RAM: {gib(plan.host_peak)} ({plan.rung})")
    return found
