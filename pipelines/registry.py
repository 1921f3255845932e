"""Which backends exist, where their weights are, and whether each can run here (and if not, why).

Model sources, for each diffusion backend, in this order:

1. ``CONTINUITY_MODEL_<NAME>`` (``CONTINUITY_MODEL_SANA_WM``, ``CONTINUITY_MODEL_WAN_I2V``, ...): a folder or a
   Hugging Face hub id;
2. ``<models dir>/<name>`` (the models dir is ``CONTINUITY_MODELS``, else ``models/`` in the data directory);
3. the backend's default hub id, if it is in the local Hugging Face cache.

Wan's video-to-video refiner is found the same way under the name ``wan-refiner``.

Listing backends imports no torch and loads nothing: it only looks at folders.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.backend import Availability, Backend, BackendError, Capabilities
from pipelines.keyframes import PictureBackend, PictureCapabilities
from pipelines.loading import LoadSpec, PipelineCache
from pipelines.memory_plan import Plan, WorkSize, plan_memory
from pipelines.model_folder import ModelError, inspect_model_folder, resolve_source
from pipelines.published import component_sizes

MODELS_ENV = "CONTINUITY_MODELS"

_CLASSES = {
    "animatic": "pipelines.animatic:AnimaticBackend",
    "sana-wm": "pipelines.sana_wm:SanaWMBackend",
    "wan-i2v": "pipelines.wan:WanI2VBackend",
    "wan-vace": "pipelines.wan:WanVACEBackend",
}
DEFAULT_BACKEND = "animatic"

# Keyframe backends (:mod:`pipelines.keyframes`): they draw a shot's first or last frame from the cast.
_PICTURE_CLASSES = {
    "compose": "pipelines.compose:ComposeBackend",
    "qwen-image-edit": "pipelines.qwen_edit:QwenImageEditBackend",
    "flux2-klein": "pipelines.flux2_klein:Flux2KleinBackend",
}
DEFAULT_PICTURE_BACKEND = "compose"
AnyBackend = type[Backend] | type[PictureBackend]


@dataclass(frozen=True)
class BackendInfo:
    name: str
    label: str
    available: bool
    reason: str
    capabilities: Capabilities | PictureCapabilities
    source: str | None
    kind: str = "video"  # or "keyframe"
    refiner: RefinerWeights | None = None  # for backends with a refiner of their own weights

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "label": self.label,
            "available": self.available,
            "reason": self.reason,
            "source": self.source,
            "capabilities": self.capabilities.to_json(),
            "refiner": self.refiner.to_json() if self.refiner is not None else None,
        }


@dataclass(frozen=True)
class RefinerWeights:
    """Whether a backend's refiner weights are here (``installed``), where, and if not, what to do."""

    name: str  # the weights name it is fetched and found under (``sana-wm-refiner``, ``wan-refiner``)
    installed: bool
    source: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "installed": self.installed, "source": self.source, "reason": self.reason}


def backend_names() -> list[str]:
    return list(_CLASSES)


def backend_class(name: str) -> type[Backend]:
    try:
        module_name, class_name = _CLASSES[name].split(":")
    except KeyError:
        if name in _PICTURE_CLASSES:
            raise BackendError(
                f"{name} draws keyframes, not videos; the video backends are {', '.join(_CLASSES)}"
            ) from None
        raise BackendError(f"unknown backend {name!r}; the backends are {', '.join(_CLASSES)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def picture_backend_names() -> list[str]:
    return list(_PICTURE_CLASSES)


def picture_backend_class(name: str) -> type[PictureBackend]:
    try:
        module_name, class_name = _PICTURE_CLASSES[name].split(":")
    except KeyError:
        raise BackendError(
            f"unknown keyframe backend {name!r}; the keyframe backends are {', '.join(_PICTURE_CLASSES)}"
        ) from None
    return getattr(importlib.import_module(module_name), class_name)


def any_backend_class(name: str) -> type[Backend] | type[PictureBackend]:
    """A video or a keyframe backend's class, by name."""
    return picture_backend_class(name) if name in _PICTURE_CLASSES else backend_class(name)


def env_name(name: str) -> str:
    return "CONTINUITY_MODEL_" + name.upper().replace("-", "_")


def model_source(name: str, models_dir: Path | None, env: Mapping[str, str] | None = None) -> str | None:
    """Where backend ``name``'s weights are, by the rules in this module's docstring; None where none is known."""
    return weights_source(name, getattr(any_backend_class(name), "default_source", None), models_dir, env)


def models_folder(default: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The folder of ``<name>`` model folders: ``$CONTINUITY_MODELS`` when set, else ``default`` (the data
    directory's ``models/``). The one rule for it: the studio's services ask here too."""
    env = os.environ if env is None else env
    return Path(env[MODELS_ENV]) if env.get(MODELS_ENV) else default


def weights_source(
    key: str, default: str | None, models_dir: Path | None, env: Mapping[str, str] | None = None
) -> str | None:
    """The source for weights named ``key`` (a backend, or a refiner such as ``wan-refiner``)."""
    env = os.environ if env is None else env
    if env.get(env_name(key)):
        return env[env_name(key)]
    base = models_folder(models_dir, env)
    if base is not None and (base / key).is_dir():
        return str(base / key)
    if default is not None and _in_hub_cache(default):
        return default
    return None


def _in_hub_cache(source: str) -> bool:
    try:
        resolve_source(source)
    except ModelError:
        return False
    return True


def describe(name: str, models_dir: Path | None = None, env: Mapping[str, str] | None = None) -> BackendInfo:
    cls = any_backend_class(name)
    kind = getattr(cls, "kind", "video")
    if not getattr(cls, "needs_weights", False):
        availability = cls().availability()
        available, reason = availability.available, availability.reason
        return BackendInfo(name, cls.label, available, reason, cls.capabilities, None, kind)
    source = model_source(name, models_dir, env)
    availability = weights_availability(cls, source, models_dir)
    refiner = refiner_weights(cls, source, models_dir, env)
    return BackendInfo(
        name, cls.label, availability.available, availability.reason, cls.capabilities, source, kind, refiner
    )


def refiner_source(
    cls: type[Backend] | type[PictureBackend],
    source: str | None,
    models_dir: Path | None,
    env: Mapping[str, str] | None,
) -> str | None:
    """Where a backend's refiner weights are: under their own name (as any weights are found), else in the
    backend's ``refiner_folder`` inside its own folder (the layout earlier versions used); None where neither."""
    key = getattr(cls, "refiner_key", None)
    if key is None:
        return None
    found = weights_source(key, getattr(cls, "refiner_default_source", None), models_dir, env)
    inner = getattr(cls, "refiner_folder", None)
    if found is None and inner and source is not None:
        try:
            folder = resolve_source(source) / inner
        except ModelError:
            return None
        found = str(folder) if (folder / "model_index.json").is_file() else None
    return found


def refiner_weights(
    cls: type[Backend] | type[PictureBackend],
    source: str | None,
    models_dir: Path | None,
    env: Mapping[str, str] | None,
) -> RefinerWeights | None:
    key = getattr(cls, "refiner_key", None)
    if key is None:
        return None
    found = refiner_source(cls, source, models_dir, env)
    fetch = f"python app.py fetch-weights {key} {getattr(cls, 'refiner_default_source', None) or 'REPO'}"
    if found is None:
        return RefinerWeights(key, False, None, f"not installed: {fetch}, or set {env_name(key)}")
    try:
        inspect_model_folder(resolve_source(found))
    except ModelError as exc:
        return RefinerWeights(key, False, found, f"not usable: {exc}")
    return RefinerWeights(key, True, found, f"installed from {found}")


def list_backends(models_dir: Path | None = None, env: Mapping[str, str] | None = None) -> list[BackendInfo]:
    """Every backend, the video backends first, then the keyframe backends."""
    return [describe(name, models_dir, env) for name in (*_CLASSES, *_PICTURE_CLASSES)]


def weights_availability(
    cls: type[Backend] | type[PictureBackend], source: str | None, models_dir: Path | None = None
) -> Availability:
    """Whether a diffusion backend can run from ``source``; the reason says what to do when it cannot."""
    for module in getattr(cls, "required_modules", ()):
        if importlib.util.find_spec(module) is None:
            return Availability(False, f"the Python package {module!r} is missing: pip install {module}")
    base = Path(os.environ[MODELS_ENV]) if os.environ.get(MODELS_ENV) else models_dir
    folder = base / cls.name if base is not None else Path("<models dir>") / cls.name
    hint = f"set {env_name(cls.name)} to its folder or hub id, or put the model folder at {folder}"
    if source is None:
        return Availability(False, f"no {cls.label} weights configured: {hint}")
    try:
        folder = resolve_source(source)
        inspect_model_folder(folder)
        for extra in getattr(cls, "extra_folders", ()):
            inspect_model_folder(folder / extra)
    except ModelError as exc:
        return Availability(False, f"{exc} ({hint})")
    if not _has_cuda():
        return Availability(True, f"ready on the CPU from {source} (no CUDA GPU: expect minutes per take)")
    return Availability(True, f"ready from {source}")


def _has_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def create_backend(
    name: str,
    *,
    source: str | None = None,
    models_dir: Path | None = None,
    spec: LoadSpec | None = None,
    cache: PipelineCache | None = None,
    device: str = "auto",
) -> Backend:
    """An instance of backend ``name``, ready to generate (diffusion backends load on their first take), on
    ``device`` (``cpu``, ``cuda``, ``cuda:N``, or ``auto``) unless ``spec`` says otherwise."""
    return _create(backend_class(name), source, models_dir, spec, cache, device)  # type: ignore[return-value]


def create_picture_backend(
    name: str,
    *,
    source: str | None = None,
    models_dir: Path | None = None,
    spec: LoadSpec | None = None,
    cache: PipelineCache | None = None,
    device: str = "auto",
) -> PictureBackend:
    """An instance of keyframe backend ``name`` (weights are looked for as a video backend's are)."""
    return _create(picture_backend_class(name), source, models_dir, spec, cache, device)  # type: ignore[return-value]


def _create(
    cls: type[Backend] | type[PictureBackend],
    source: str | None,
    models_dir: Path | None,
    spec: LoadSpec | None,
    cache: PipelineCache | None,
    device: str,
) -> Backend | PictureBackend:
    if not getattr(cls, "needs_weights", False):
        return cls()  # type: ignore[abstract]
    if spec is None:
        found = source or model_source(cls.name, models_dir)
        if found is None:
            raise BackendError(weights_availability(cls, None, models_dir).reason)
        spec = LoadSpec(source=found, device=device)
    extra: dict[str, Any] = {}
    refiner_key = getattr(cls, "refiner_key", None)
    if refiner_key:
        refiner = weights_source(refiner_key, getattr(cls, "refiner_default_source", None), models_dir)
        extra["refiner_spec"] = LoadSpec(source=refiner, device=spec.device) if refiner else None
    return cls(spec, cache=cache, **extra)  # type: ignore[call-arg]


def plan_backend(
    name: str,
    *,
    vram: int,
    ram: int | None = None,
    refiner: bool = False,
    size: WorkSize | None = None,
    models_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Plan:
    """The memory plan for backend ``name`` on a card of ``vram`` bytes (and ``ram`` bytes of host RAM), here or
    not: sized from its weights where they are on this machine, else from its published configs built on the meta
    device. Loads nothing."""
    cls = any_backend_class(name)
    if not getattr(cls, "needs_weights", False):
        raise BackendError(f"{name} has no weights: it runs on the CPU and needs no memory plan")
    size = size or cls.plan_size  # type: ignore[union-attr]
    _check_plan_size(cls, size)
    source = _usable_source(model_source(name, models_dir, env))
    components = component_sizes(name, source)
    if refiner:
        key = getattr(cls, "refiner_key", None)
        if key is None:
            raise BackendError(f"{name} has no refiner")
        found = _usable_source(refiner_source(cls, source, models_dir, env))
        components += component_sizes(key, found, "refiner", cls.refiner_loads)  # type: ignore[union-attr]
    geometry = cls.memory_geometry  # type: ignore[union-attr]
    return plan_memory(name, components, geometry, size, vram=vram, ram=ram, refiner=refiner)


def _usable_source(source: str | None) -> str | None:
    """``source`` where its weights can be read here; None (plan from the published config) where not."""
    if source is None:
        return None
    try:
        inspect_model_folder(resolve_source(source))
    except ModelError:
        return None
    return source


def _check_plan_size(cls: AnyBackend, size: WorkSize) -> None:
    capabilities = cls.capabilities
    largest = getattr(capabilities, "max_side", 4096)
    if not (16 <= size.width <= largest and 16 <= size.height <= largest):
        raise BackendError(f"{cls.name} renders sides of 16 to {largest} pixels, not {size.width}x{size.height}")
    frames = getattr(capabilities, "max_frames", 1)
    if not 1 <= size.frames <= frames:
        raise BackendError(f"{cls.name} renders 1 to {frames} frame(s), not {size.frames}")
