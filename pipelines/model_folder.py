"""A model folder before anything loads: where it is, what it holds, and whether it is whole and safe to load.

:func:`resolve_source` finds a model as a local folder, or a hub id in the local Hugging Face cache (never
downloading). :func:`inspect_model_folder` reads it without loading a weight: a diffusers ``model_index.json``,
weights for every model component, safetensors only (pickled ``.bin``/``.pt`` weights can run code when loaded,
so they are refused), and every safetensors header readable and consistent with the file's size (a truncated
download is caught here, not half-way through a load). The parameter counts it reads from the headers size the
memory profile (:func:`pipelines.loading.choose_profile`).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.backend import BackendError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_DTYPE_BYTES |= {"F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


class ModelError(BackendError):
    """A model folder that cannot be loaded: missing, incomplete, pickled or damaged."""


@dataclass(frozen=True)
class ComponentInfo:
    name: str
    library: str  # "diffusers" or "transformers" (or another library for tokenizers, schedulers)
    class_name: str
    weight_files: tuple[Path, ...] = ()
    parameters: int = 0
    largest_block: int = 0  # parameters of its largest repeated block (what group offload holds at once)

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
        tensors: dict[str, int] = {}
        for path in weights:
            tensors.update(safetensors_tensors(path))
        components[name] = ComponentInfo(
            name, str(library), str(class_name), tuple(weights), sum(tensors.values()), largest_block(tensors)
        )
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


# A tensor inside a repeated block: ``blocks.3.attn.to_q.weight``, ``encoder.block.11...``, ``model.layers.40...``.
_BLOCKS = "blocks|block|layers|layer|transformer_blocks|single_transformer_blocks|h"
_BLOCK = re.compile(rf"^(.*?(?:^|\.)(?:{_BLOCKS})\.\d+)\.")


def largest_block(tensors: dict[str, int]) -> int:
    """The element count of the largest repeated block among ``{tensor name: elements}`` (the biggest piece block-
    level offload moves at once); the whole count where the names show no blocks."""
    blocks: dict[str, int] = {}
    for name, count in tensors.items():
        found = _BLOCK.match(name)
        if found:
            blocks[found.group(1)] = blocks.get(found.group(1), 0) + count
    return max(blocks.values()) if blocks else sum(tensors.values())


def safetensors_tensors(path: Path) -> dict[str, int]:
    """Each tensor's element count from a safetensors header; raises :class:`ModelError` for a damaged or
    truncated file."""
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
        counts: dict[str, int] = {}
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            begin, stop = tensor["data_offsets"]
            end = max(end, stop)
            elements = 1
            for dim in tensor["shape"]:
                elements *= dim
            counts[name] = elements
            if stop - begin != elements * _DTYPE_BYTES.get(tensor["dtype"], 0) and tensor["dtype"] in _DTYPE_BYTES:
                raise ValueError(f"tensor {name} has the wrong byte length")
        if 8 + length + end > size:
            raise ValueError(f"truncated: {size} bytes where {8 + length + end} are needed")
    except (OSError, ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is damaged ({exc}); download it again") from None
    return counts
