"""Loading diffusers pipelines: one declarative load spec, checked folders, quantization, offload, a cache.

A :class:`LoadSpec` says where the model is (a local folder, or a Hugging Face hub id found in the local
cache), the dtype, the quantization of each component (bitsandbytes NF4 or int8 on CUDA, torchao int8
weight-only on the CPU, or none), the offload mode (none, model CPU offload, group offload with or without
CUDA streams, sequential) and VAE tiling. ``auto`` values are settled by :func:`choose_profile` from the
free VRAM and the model's size, with the reason in words.

Before anything loads, :func:`inspect_model_folder` checks the folder: a diffusers ``model_index.json``,
weights for every model component, safetensors only (pickled ``.bin``/``.pt`` weights can run code when
loaded, so they are refused), and every safetensors header readable and consistent with the file's size
(a truncated download is caught here, not half-way through a load).

Nothing here runs at import time; torch and diffusers are imported by the functions that need them.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.backend import BackendError

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "nf4", "int8", "torchao-int8")
OFFLOADS = ("none", "model", "group", "group-stream", "sequential")
DEVICES = ("auto", "cuda", "cuda:N", "cpu")  # cuda is the current GPU; cuda:N picks one
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_DTYPE_BYTES |= {"F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


class ModelError(BackendError):
    """A model folder that cannot be loaded: missing, incomplete, pickled or damaged."""


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


@dataclass(frozen=True)
class ComponentInfo:
    name: str
    library: str  # "diffusers" or "transformers" (or another library for tokenizers, schedulers)
    class_name: str
    weight_files: tuple[Path, ...] = ()
    parameters: int = 0

    @property
    def has_weights(self) -> bool:
        return bool(self.weight_files)


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    pipeline_class: str
    components: dict[str, ComponentInfo] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(c.parameters for c in self.components.values())

    def bytes_at(self, dtype: str, quantization: dict[str, str] | None = None) -> int:
        """Weight bytes once loaded at ``dtype`` with the given per-component quantization (estimates)."""
        per_param = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}[dtype]
        quant_bytes = {"nf4": 0.55, "int8": 1.05, "torchao-int8": 1.05}
        total = 0.0
        for name, component in self.components.items():
            scheme = (quantization or {}).get(name, "none")
            total += component.parameters * quant_bytes.get(scheme, per_param)
        return int(total)

    def component_bytes(self, name: str, dtype: str, quantization: dict[str, str] | None = None) -> int:
        only = ModelFolder(self.path, self.pipeline_class, {name: self.components[name]})
        return only.bytes_at(dtype, quantization)

    def revision(self) -> str | None:
        """The commit a Hugging Face cache snapshot was downloaded at (``.../snapshots/<commit>/``), if any."""
        parts = self.path.parts
        if "snapshots" in parts[:-1]:
            return parts[parts.index("snapshots") + 1]
        return None

    def file_fingerprints(self) -> dict[str, str]:
        """Each weight file as ``size:<bytes> header:<sha256 of its safetensors header>``.

        Cheap at any model size: the header names every tensor with its dtype, shape and byte offsets, so it
        changes with the architecture and the file layout. It does not tell apart two fine-tunes of the same
        shape; a model from the Hugging Face cache is pinned exactly by :meth:`revision`.
        """
        return {
            str(path.relative_to(self.path)): f"size:{path.stat().st_size} header:{_header_digest(path)}"
            for component in self.components.values()
            for path in component.weight_files
        }


def resolve_source(source: str, revision: str | None = None) -> Path:
    """A local folder, or a hub id looked up in the local Hugging Face cache. Never downloads."""
    candidate = Path(source).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    looks_like_path = source.startswith((".", "/", "~")) or "\\" in source or source.count("/") != 1
    if looks_like_path:
        raise ModelError(f"model folder not found: {candidate}; check the path, or give a Hugging Face hub id")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with diffusers
        raise ModelError("huggingface_hub is not installed; give a local model folder") from exc
    try:
        return Path(snapshot_download(source, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        raise ModelError(
            f"{source} is not in the Hugging Face cache on this machine. Download it once with "
            f"`hf download {source}` (the studio never downloads weights by itself), or give its local folder"
        ) from None
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises many kinds; all mean "not usable here"
        raise ModelError(f"cannot use {source} from the Hugging Face cache: {exc}") from None


def inspect_model_folder(folder: Path) -> ModelFolder:
    """Check a diffusers model folder before loading it; raise :class:`ModelError` saying what is wrong."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelError(f"{folder} is not a diffusers model folder: it has no model_index.json")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{index_path} is damaged ({exc}); download the model again") from None
    if not isinstance(index, dict):
        raise ModelError(f"{index_path} is damaged: it does not hold a JSON object")
    components: dict[str, ComponentInfo] = {}
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or entry[0] is None:
            continue
        library, class_name = entry
        sub = folder / name
        weights = _weight_files(sub)
        is_network = library in ("diffusers", "transformers") and _is_model_class(str(class_name))
        if is_network and sub.is_dir() and not (sub / "config.json").is_file():
            raise ModelError(f"{sub} has no config.json; the download is incomplete")
        if not weights and _holds_model(sub):
            pickled = sorted(p.name for p in sub.glob("*") if p.suffix in PICKLE_SUFFIXES)
            if pickled:
                raise ModelError(
                    f"{sub} holds only pickled weights ({', '.join(pickled)}); Continuity loads safetensors only, "
                    "because pickled files can run code when opened. Use the model's safetensors release, or "
                    "convert it with `safetensors` on a machine you trust"
                )
            raise ModelError(f"{sub} has a config but no weights; the download is incomplete")
        parameters = sum(_safetensors_parameters(path) for path in weights)
        components[name] = ComponentInfo(name, str(library), str(class_name), tuple(weights), parameters)
    for name, component in components.items():
        if not (folder / name).exists() and component.library in ("diffusers", "transformers"):
            raise ModelError(f"{folder} lists component {name!r} but has no {name}/ folder; download it again")
    return ModelFolder(folder, str(index.get("_class_name", "")), components)


def _is_model_class(class_name: str) -> bool:
    """Components that are networks (with weights), as opposed to tokenizers, schedulers and processors."""
    lowered = class_name.lower()
    return not any(word in lowered for word in ("tokenizer", "scheduler", "processor", "feature_extractor"))


def _header_digest(path: Path) -> str:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return hashlib.sha256(f.read(length)).hexdigest()[:16]


def _holds_model(sub: Path) -> bool:
    return (sub / "config.json").is_file()


def _weight_files(sub: Path) -> list[Path]:
    if not sub.is_dir():
        return []
    return sorted(sub.glob("*.safetensors"))


def _safetensors_parameters(path: Path) -> int:
    """Parameter count from a safetensors header; raises :class:`ModelError` for a damaged or truncated file."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a safetensors header")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, 100 * 2**20):
                raise ValueError("header length is larger than the file")
            header = json.loads(f.read(length))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        end = 0
        count = 0
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            begin, stop = tensor["data_offsets"]
            end = max(end, stop)
            elements = 1
            for dim in tensor["shape"]:
                elements *= dim
            count += elements
            if stop - begin != elements * _DTYPE_BYTES.get(tensor["dtype"], 0) and tensor["dtype"] in _DTYPE_BYTES:
                raise ValueError(f"tensor {name} has the wrong byte length")
        if 8 + length + end > size:
            raise ValueError(f"truncated: {size} bytes where {8 + length + end} are needed")
    except (OSError, ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is damaged ({exc}); download it again") from None
    return count


# Choosing a memory profile.


@dataclass(frozen=True)
class Profile:
    spec: LoadSpec
    reason: str


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


def choose_profile(
    spec: LoadSpec,
    model: ModelFolder,
    *,
    free_vram: int | None,
    big_components: tuple[str, ...] = ("transformer", "text_encoder"),
    headroom: float = 1.25,
) -> Profile:
    """Settle the ``auto`` fields of ``spec`` for this machine and say why.

    On a GPU: everything resident in bf16 when it fits with headroom; else NF4 on the big components; then
    NF4 with model CPU offload; then NF4 with group offload over CUDA streams (the smallest peak). Without a
    GPU: float32 on the CPU (SANA-WM's camera code needs it there), with torchao int8 weight-only on the big
    components when the model is large.
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
    need_full = model.bytes_at(dtype, chosen) * headroom
    free_gib = free_vram / 2**30
    if offload != "auto":
        reasons.append(f"offload {offload} as asked")
    elif need_full <= free_vram:
        offload = "none"
        reasons.append(f"{need_full / 2**30:.1f} GiB needed fits in {free_gib:.1f} GiB free: all on the GPU")
    else:
        if not spec.quantization:
            chosen.update(dict.fromkeys(present, "nf4"))
        need_nf4 = model.bytes_at(dtype, chosen) * headroom
        biggest = max((model.component_bytes(name, dtype, chosen) for name in model.components), default=0)
        if need_nf4 <= free_vram:
            offload = "none"
            reasons.append(
                f"bf16 needs {need_full / 2**30:.1f} GiB, NF4 {need_nf4 / 2**30:.1f} GiB: NF4, all on the GPU"
            )
        elif biggest * headroom <= free_vram:
            offload = "model"
            reasons.append(
                f"NF4 needs {need_nf4 / 2**30:.1f} GiB of {free_gib:.1f} GiB free: NF4 with model CPU offload"
            )
        else:
            offload = "group-stream"
            reasons.append(
                f"the largest component alone needs {biggest * headroom / 2**30:.1f} GiB of {free_gib:.1f} GiB "
                "free: NF4 with group offload over CUDA streams"
            )
    settled = replace(spec, device=device, dtype=dtype, offload=offload, quantization=_pairs(chosen))
    return Profile(settled, _say(reasons))


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
