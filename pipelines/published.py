"""The published architectures of the backends' default weights, and their sizes without the weights.

``pipelines/published/<weights name>.json`` holds, for each default repository (``sana-wm``, ``sana-wm-refiner``,
``wan-i2v``, ``wan-vace``, ``wan-refiner``, ``qwen-image-edit``, ``flux2-klein``), its pipeline class and every
component's library, class and ``config.json`` as published, with where each was read. :func:`meta_tensors` builds
a component from its config on PyTorch's meta device (shapes, no memory, no weights) and counts its parameters, so
a memory plan can be made for weights that are not on this machine.

:func:`component_sizes` is the one place a plan's sizes come from: the model folder's safetensors headers where
the weights are here, the published config where they are not.
"""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Any

from pipelines.loading import sizes_of
from pipelines.memory_plan import ComponentSize
from pipelines.model_folder import ModelError, inspect_model_folder, largest_block, resolve_source

PUBLISHED = Path(__file__).with_name("published")
_NOT_NETWORKS = ("tokenizer", "scheduler", "processor", "feature_extractor")


def published_names() -> list[str]:
    return sorted(path.stem for path in PUBLISHED.glob("*.json"))


@functools.cache
def published(name: str) -> dict[str, Any]:
    """The published description of weights ``name`` (see the module docstring)."""
    path = PUBLISHED / f"{name}.json"
    if not path.is_file():
        raise ModelError(f"no published configuration is known for {name}; the known ones: {published_names()}")
    return json.loads(path.read_text(encoding="utf-8"))


def is_network(library: str, class_name: str) -> bool:
    """A component with weights: not a tokenizer, scheduler or processor (whichever library it comes from)."""
    return bool(library) and not any(word in class_name.lower() for word in _NOT_NETWORKS)


@functools.cache
def _meta_tensors(library: str, class_name: str, config_json: str) -> tuple[tuple[str, int], ...]:
    import torch

    config = json.loads(config_json)
    if library == "diffusers":
        import diffusers

        cls = getattr(diffusers, class_name)
        with torch.device("meta"):
            model = cls.from_config(config)
    elif library == "transformers":
        import transformers

        cls = getattr(transformers, class_name)
        settings = transformers.AutoConfig.for_model(**config)
        with torch.device("meta"):
            model = cls(settings)
    else:  # a pipeline's own module, as model_index.json names it: ["ltx2", "LTX2TextConnectors"]
        try:
            cls = getattr(importlib.import_module(f"diffusers.pipelines.{library}"), class_name)
        except (ImportError, AttributeError):
            raise ModelError(f"cannot build {class_name} from the {library} library") from None
        with torch.device("meta"):
            model = cls.from_config(config)
    return tuple((name, parameter.numel()) for name, parameter in model.named_parameters())


def meta_tensors(library: str, class_name: str, config: dict[str, Any]) -> dict[str, int]:
    """``{parameter name: elements}`` of ``class_name`` built from ``config`` on the meta device (no memory)."""
    return dict(_meta_tensors(library, class_name, json.dumps(config, sort_keys=True)))


def published_sizes(name: str, stage: str = "backbone", only: tuple[str, ...] | None = None) -> list[ComponentSize]:
    """The components of published weights ``name``, sized by meta-device builds of their configs."""
    sizes = []
    for component, entry in published(name)["components"].items():
        if not is_network(entry["library"], entry["class"]) or (only is not None and component not in only):
            continue
        tensors = meta_tensors(entry["library"], entry["class"], entry["config"])
        quantizable = entry["library"] in ("diffusers", "transformers")
        sizes.append(
            ComponentSize(
                component, stage, entry["class"], sum(tensors.values()), largest_block(tensors), quantizable, "config"
            )
        )
    return sizes


def folder_sizes(source: str, stage: str = "backbone", only: tuple[str, ...] | None = None) -> list[ComponentSize]:
    """The components of the model folder (or cached hub id) ``source``, sized from its safetensors headers."""
    sizes = sizes_of(inspect_model_folder(resolve_source(source)), stage)
    return [size for size in sizes if only is None or size.name in only]


def component_sizes(
    name: str, source: str | None, stage: str = "backbone", only: tuple[str, ...] | None = None
) -> list[ComponentSize]:
    """Weights ``name``'s components: from ``source``'s headers when it is given, else from the published config."""
    if source is not None:
        return folder_sizes(source, stage, only)
    return published_sizes(name, stage, only)
