"""Loading diffusers pipelines: one declarative load spec, checked folders, quantization, offload, a cache.

A :class:`LoadSpec` says where the model is (a local folder, or a Hugging Face hub id found in the local
cache), the dtype, the quantization of each component (bitsandbytes NF4 or int8 on CUDA, torchao int8
weight-only on the CPU, or none), the offload mode (none, model CPU offload, group offload with or without
CUDA streams, sequential) and VAE tiling. ``auto`` values are settled by :func:`choose_profile` from the
free VRAM and host RAM, the real size of each component and the work at the backend's planning size, through the
memory planner (:mod:`pipelines.memory_plan`), with the reason in words.

Before anything loads, :mod:`pipelines.model_folder` checks the folder (whole, safetensors only) and counts its
parameters, which the profile is chosen by.

Nothing here runs at import time; torch and diffusers are imported by the functions that need them.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.memory_plan import GENERIC_GEOMETRY, GENERIC_SIZE, ComponentSize, Geometry, Plan, WorkSize, plan_memory
from pipelines.model_folder import ModelError, ModelFolder, inspect_model_folder, resolve_source

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "nf4", "int8", "torchao-int8")
OFFLOADS = ("none", "model", "group", "group-stream", "sequential")
DEVICES = ("auto", "cuda", "cuda:N", "cpu")  # cuda is the current GPU; cuda:N picks one
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class LoadSpec:
    """How to load one pipeline. Frozen and hashable: it is the pipeline cache's key.

    ``quantization`` maps component names (``transformer``, ``text_encoder``, ...) to a scheme from
    :data:`QUANTIZATIONS`; components not named are loaded unquantized. ``dtype``, ``offload`` and ``device``
    may be ``"auto"`` until :func:`choose_profile` settles them.
    """

    source: str
    revision: str | None = None
    dtype: str = "auto"
    quantization: tuple[tuple[str, str], ...] = ()
    offload: str = "auto"
    vae_tiling: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ModelError("a load spec needs a model source: a folder or a Hugging Face hub id")
        if self.dtype not in (*DTYPES, "auto"):
            raise ModelError(f"dtype must be one of {', '.join((*DTYPES, 'auto'))}, got {self.dtype!r}")
        if self.offload not in (*OFFLOADS, "auto"):
            raise ModelError(f"offload must be one of {', '.join((*OFFLOADS, 'auto'))}, got {self.offload!r}")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ModelError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        quantization = dict(self.quantization)
        for component, scheme in quantization.items():
            if scheme not in QUANTIZATIONS:
                raise ModelError(
                    f"quantization for {component} must be one of {', '.join(QUANTIZATIONS)}, got {scheme!r}"
                )
        object.__setattr__(self, "quantization", tuple(sorted(quantization.items())))

    @classmethod
    def create(cls, source: str | Path, *, quantization: dict[str, str] | None = None, **fields: Any) -> LoadSpec:
        return cls(source=str(source), quantization=tuple((quantization or {}).items()), **fields)

    def quant_for(self, component: str) -> str:
        return dict(self.quantization).get(component, "none")

    @property
    def settled(self) -> bool:
        return "auto" not in (self.dtype, self.offload, self.device)

    def to_json(self) -> dict[str, Any]:
        shown = asdict(self)
        shown["quantization"] = dict(self.quantization)
        return shown


# Choosing a memory profile.


@dataclass(frozen=True)
class Profile:
    spec: LoadSpec
    reason: str
    plan: Plan | None = None  # the memory plan it follows, on a GPU


def is_cuda(device: str) -> bool:
    """``cuda`` or ``cuda:N``."""
    return device == "cuda" or device.startswith("cuda:")


def cuda_device_count() -> int:
    """How many CUDA GPUs this process can use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cuda_free_memory(device: str = "cuda") -> int | None:
    """Free bytes on a CUDA device (``cuda`` is the current one, ``cuda:N`` that one), or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device) if is_cuda(device) else None)
    return int(free)


def host_free_memory() -> int | None:
    """Host RAM available to a new allocation (Linux's MemAvailable), or None where it cannot be read."""
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def choose_profile(
    spec: LoadSpec,
    model: ModelFolder,
    *,
    free_vram: int | None,
    free_ram: int | None = None,
    geometry: Geometry = GENERIC_GEOMETRY,
    size: WorkSize = GENERIC_SIZE,
    refiner: tuple[ComponentSize, ...] = (),
    big_components: tuple[str, ...] = ("transformer", "text_encoder"),
) -> Profile:
    """Settle the ``auto`` fields of ``spec`` for this machine and say why.

    On a GPU the memory planner (:func:`pipelines.memory_plan.plan_memory`) decides from the folder's real
    component sizes, the refiner's when it will be loaded beside (``refiner``), the work at ``size`` and the free
    VRAM and host RAM: resident in bf16 where it fits, else offloaded by model, quantizing only what does not fit
    alone, else streamed by block. A plan that fits nowhere is refused here, before anything loads, with what
    would fit. Without a GPU: float32 on the CPU (SANA-WM's camera code needs it there), with torchao int8
    weight-only on the big components when the model is large.
    """
    chosen = dict(spec.quantization)
    reasons = []
    device = spec.device
    if device == "auto":
        device = "cuda" if free_vram is not None else "cpu"
    if is_cuda(device) and free_vram is None:
        raise ModelError("the load spec asks for CUDA but this machine has no CUDA GPU; use device 'cpu' or 'auto'")
    dtype = spec.dtype
    if dtype == "auto":
        dtype = "bfloat16" if is_cuda(device) else "float32"
    offload = spec.offload
    present = [name for name in big_components if name in model.components]
    if device == "cpu":
        if offload == "auto":
            offload = "none"
        if not spec.quantization and model.bytes_at(dtype) > 8 * 2**30:
            chosen.update(dict.fromkeys(present, "torchao-int8"))
            reasons.append("the weights are over 8 GiB in float32, so the big components use torchao int8")
        reasons.insert(0, f"no CUDA GPU: {dtype} on the CPU")
        return Profile(
            replace(spec, device="cpu", dtype=dtype, offload=offload, quantization=_pairs(chosen)), _say(reasons)
        )
    assert free_vram is not None
    if offload != "auto":
        settled = replace(spec, device=device, dtype=dtype, quantization=_pairs(chosen))
        return Profile(settled, f"offload {offload} as asked")
    components = [*sizes_of(model), *refiner]
    plan = plan_memory(
        model.pipeline_class or "the model",
        components,
        geometry,
        size,
        vram=free_vram,
        ram=free_ram,
        refiner=bool(refiner),
        fixed={name: scheme for name, scheme in chosen.items() if scheme in ("int8", "nf4", "none")},
    )
    if not plan.fits:
        would = "; ".join(plan.suggestions) or "nothing the planner knows"
        raise ModelError(
            f"{model.path.name} does not fit this GPU ({plan.reason}). What would: {would}. "
            "Set the offload and quantization by hand to try anyway"
        )
    chosen.update(plan.quantization("backbone"))
    settled = replace(
        spec,
        device=device,
        dtype=dtype,
        offload=plan.offload or "none",
        quantization=_pairs(chosen),
        vae_tiling=spec.vae_tiling or plan.vae_tiling,
    )
    return Profile(settled, plan.reason, plan)


def sizes_of(model: ModelFolder, stage: str = "backbone") -> list[ComponentSize]:
    """A model folder's networks as the memory planner sees them (sizes from the safetensors headers)."""
    return [
        ComponentSize(
            info.name,
            stage,
            info.class_name,
            info.parameters,
            info.largest_block or info.parameters,
            info.library in ("diffusers", "transformers"),
            "weights",
        )
        for info in model.components.values()
        if info.parameters > 0
    ]


def _pairs(mapping: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in mapping.items() if v != "none"))


def _say(reasons: list[str]) -> str:
    return "; ".join(reasons)


# Building the quantization config and loading.


def quantization_config(spec: LoadSpec, model: ModelFolder) -> Any:
    """The diffusers ``PipelineQuantizationConfig`` for ``spec`` (None when nothing is quantized).

    bitsandbytes (NF4, int8) needs CUDA; torchao int8 weight-only is the CPU path. Components from
    transformers get transformers' config classes, diffusers models diffusers' own.
    """
    wanted = {name: scheme for name, scheme in spec.quantization if scheme != "none"}
    if not wanted:
        return None
    import torch
    from diffusers import PipelineQuantizationConfig

    unknown = sorted(set(wanted) - set(model.components))
    if unknown:
        raise ModelError(
            f"cannot quantize {', '.join(unknown)}: the model has only {', '.join(sorted(model.components))}"
        )
    compute = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(spec.dtype, torch.float32)
    mapping = {}
    for name, scheme in wanted.items():
        library = model.components[name].library
        if library not in ("diffusers", "transformers") or not model.components[name].has_weights:
            raise ModelError(f"component {name} ({model.components[name].class_name}) has no weights to quantize")
        mapping[name] = _quant_config(library, scheme, compute)
    return PipelineQuantizationConfig(quant_mapping=mapping)


def _quant_config(library: str, scheme: str, compute: Any) -> Any:
    if library == "diffusers":
        from diffusers import BitsAndBytesConfig, TorchAoConfig
    else:
        from transformers import BitsAndBytesConfig, TorchAoConfig
    if scheme == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
    if scheme == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    from torchao.quantization import Int8WeightOnlyConfig

    return TorchAoConfig(Int8WeightOnlyConfig())


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_pipeline(pipeline_class: type, spec: LoadSpec, **components: Any) -> Any:
    """Load ``pipeline_class`` from ``spec`` (settled: no ``auto`` left) and place it as the spec says."""
    if not spec.settled:
        raise ModelError("settle the load spec with choose_profile() before loading")
    folder = resolve_source(spec.source, spec.revision)
    model = inspect_model_folder(folder)
    uses_bnb = any(scheme in ("nf4", "int8") for _, scheme in spec.quantization)
    if uses_bnb and not is_cuda(spec.device):
        raise ModelError("bitsandbytes NF4/int8 quantization needs a CUDA GPU; on the CPU use torchao-int8")
    if spec.offload in ("model", "group-stream", "sequential") and not is_cuda(spec.device):
        raise ModelError(f"offload '{spec.offload}' needs a CUDA GPU; on the CPU use 'none' or 'group'")
    quant = quantization_config(spec, model)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # the studio reports progress itself
    transformers_logging.disable_progress_bar()
    try:
        pipe = pipeline_class.from_pretrained(
            folder,
            dtype=torch_dtype(spec.dtype),
            quantization_config=quant,
            use_safetensors=True,
            local_files_only=True,
            **components,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"could not load {folder.name} as {pipeline_class.__name__}: {exc}") from exc
    place_pipeline(pipe, spec)
    if spec.vae_tiling and hasattr(getattr(pipe, "vae", None), "enable_tiling"):
        pipe.vae.enable_tiling()
    return pipe


def place_pipeline(pipe: Any, spec: LoadSpec) -> None:
    """Put the pipeline where the spec says: resident, or behind one of diffusers' offload hooks."""
    import torch

    device = torch.device(spec.device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)  # progress is reported through the backend's callback
    if spec.offload == "none":
        # Weights load onto the CPU; bitsandbytes places its quantized modules on the GPU itself, and they must
        # not be moved again: move the rest one component at a time.
        if spec.device != "cpu":
            for component in _modules(pipe):
                if not _bitsandbytes(component):
                    component.to(device)
        return
    if spec.offload in ("model", "sequential") and not hasattr(pipe, "enable_model_cpu_offload"):
        # A single model (a refiner's transformer) has no pipeline hooks: stream its blocks instead.
        pipe.enable_group_offload(onload_device=device, offload_type="block_level", num_blocks_per_group=1)
    elif spec.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif spec.offload in ("group", "group-stream"):
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=spec.offload == "group-stream",
        )
    elif spec.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)


def _modules(pipe: Any) -> list[Any]:
    import torch

    if isinstance(pipe, torch.nn.Module):
        return [pipe]
    return [c for c in getattr(pipe, "components", {}).values() if isinstance(c, torch.nn.Module)]


def _bitsandbytes(module: Any) -> bool:
    quantizer = getattr(module, "hf_quantizer", None)
    return quantizer is not None and "bnb" in type(quantizer).__name__.lower()


class PipelineCache:
    """Loaded pipelines by ``(kind, spec)``, so takes with the same spec reuse one load.

    ``capacity`` is how many stay loaded (one on a GPU: a second model rarely fits beside the first); loading
    past it unloads the least recently used. ``loads`` counts real loads, for checking reuse.
    """

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self.loads = 0
        self._items: OrderedDict[tuple[str, LoadSpec], Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, kind: str, spec: LoadSpec, loader: Callable[[], Any]) -> Any:
        key = (kind, spec)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            while len(self._items) >= self.capacity:
                self._evict(next(iter(self._items)))
            item = loader()
            self.loads += 1
            self._items[key] = item
            return item

    def __contains__(self, key: tuple[str, LoadSpec]) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def unload(self, kind: str | None = None) -> int:
        """Drop every pipeline (or those of ``kind``) and give their memory back; returns how many."""
        with self._lock:
            keys = [key for key in self._items if kind is None or key[0] == kind]
            for key in keys:
                self._evict(key)
            return len(keys)

    def _evict(self, key: tuple[str, LoadSpec]) -> None:
        item = self._items.pop(key)
        del item
        free_memory()


def free_memory() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a requirement
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
